"""The Julia-set workflow: tiles computed in parallel, stitched into one PNG by the last."""
from __future__ import annotations

import pytest
from PIL import Image

from incidents import workflow
from incidents.engine import operations
from incidents.models import IncidentStatus, MessageLog, MessageStatus
from workflows import julia

from .conftest import ended, wait_until

pytestmark = pytest.mark.e2e


def test_julia_tiles_are_computed_on_two_workers_and_the_last_one_writes_the_image(workers):
    workers.start("julia1", concurrency=2)
    workers.start("julia2", concurrency=2)
    incident_id = operations.start_incident(
        name="julia", kind=julia.KIND,
        parameters={"width": 120, "height": 90, "tiles": 3, "max_iter": 40})
    incident = wait_until(lambda: ended(incident_id), what="the julia image")
    assert incident.status == IncidentStatus.COMPLETE
    with workflow.OpenResult(incident_id, julia.IMAGE) as stored, Image.open(stored) as image:
        assert image.size == (120, 90) and image.mode == "L"
        assert len(set(image.getdata())) > 2  # a picture, not a blank
    log = MessageLog.objects.filter(incident_id=incident_id)
    # The stitch saw every one of the 9 tiles, once, and nothing was left unhandled.
    assert log.filter(destination="julia_tile", status=MessageStatus.COMPLETE).count() == 9
    assert log.filter(destination="julia_stitch", status=MessageStatus.COMPLETE).count() == 9
    assert not log.exclude(status=MessageStatus.COMPLETE).exists()
