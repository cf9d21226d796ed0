"""A worker SIGKILLed mid-handler: the message is redelivered, its effects apply once."""
from __future__ import annotations

import json

import pytest

from incidents.models import HandlerState, IncidentStatus, MessageLog, MessageStatus

from ..conftest import ended, start_blocked_incident, wait_until

pytestmark = pytest.mark.e2e


def test_a_worker_killed_mid_handler_loses_nothing_and_applies_effects_once(workers, tmp_path):
    first = workers.start("doomed")
    incident_id = start_blocked_incident(tmp_path, "killed worker")
    workers.kill(first)
    (tmp_path / "release").touch()
    workers.start("survivor")
    incident = wait_until(lambda: ended(incident_id), what="the incident to complete")
    assert incident.status == IncidentStatus.COMPLETE
    assert sorted(p.name for p in tmp_path.glob("started-*")) == ["started-1", "started-2"]
    blocked = MessageLog.objects.get(incident_id=incident_id, destination="probe_block")
    assert (blocked.status, blocked.attempts) == (MessageStatus.COMPLETE, 2)
    assert MessageLog.objects.filter(incident_id=incident_id, destination="probe_count").count() == 1
    states = [(handler, json.loads(data)) for handler, data in HandlerState.objects.filter(
        incident_id=incident_id).values_list("handler", "data")]
    assert states == [("block_handler", {"blocked": True}), ("count_handler", {"counted": True})]
