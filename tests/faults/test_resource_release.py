"""A worker SIGKILLed between a resource's registration and its incident's end, or inside the
release handler after its side effect: the resource is still released exactly once.

"Exactly once" here means, per resource: one release message is logged for it
(release_attempts == 1), that message ends COMPLETE (a later copy of it would be dropped as a
duplicate), the resource ends RELEASED with no second release sent, and the fake scheduler's
job is cancelled once (cancelled/<ref> is created once). The release handler's code, like any
handler's, runs at least once: a worker killed inside it runs it again on the redelivery
(calls.log has two lines then), so its side effect must be idempotent by ref, as a scheduler's
cancel of a job already cancelled is. The workflow: tests/workflows/resources.py.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from incidents.engine import operations, resources
from incidents.models import ExternalResource, Incident, IncidentStatus, MessageLog, MessageStatus
from incidents.processes import WorkerGroup, worker_env
from tests.workflows.resources import RELEASE_QUEUE

from ..conftest import TEST_MODULES, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

MODULES = f"{TEST_MODULES},tests.workflows.resources"
# A run killed between commit and publish leaves its sends to the relay: relay quickly.
QUICK_RELAY = {"WORKFLOW_RELAY_STALE_SECONDS": "2", "WORKFLOW_RELAY_INTERVAL_SECONDS": "1"}


def env(**extra: str) -> dict[str, str]:
    return worker_env({"WORKFLOW_MODULES": MODULES, **QUICK_RELAY, **extra})


def start(root: Path, then: str) -> str:
    return operations.start_incident(kind="TEST", name="fault", queue="res_start",
                                     message={"root": str(root), "jobs": ["job-1"],
                                              "then": then})


def lines(path: Path) -> list[str]:
    return [line.split()[0] for line in path.read_text().splitlines()] if path.exists() else []


def released_once(incident_id: str, root: Path) -> None:
    incident = wait_until(lambda: Incident.objects.filter(pk=incident_id,
                                                          cleaned_at__isnull=False).first(),
                          what="the incident released and cleaned up")
    assert incident.status == IncidentStatus.COMPLETE
    (held,) = ExternalResource.objects.filter(incident_id=incident_id)
    assert (held.ref, held.status, held.release_attempts) == ("job-1", "RELEASED", 1)
    (release,) = MessageLog.objects.filter(incident_id=incident_id, destination=RELEASE_QUEUE)
    assert release.status == MessageStatus.COMPLETE and str(release.pk) == str(held.release_message)
    assert sorted(p.name for p in (root / "cancelled").glob("*")) == ["job-1"]
    assert not resources.outstanding(incident_id).exists()


def test_a_worker_killed_after_registering_before_the_next_hop_releases_once(
        transactional_db, broker, tmp_path):
    # Given a worker that dies right after its first commit, before publishing what it sent:
    # res_start has registered job-1 and logged its message to res_next, which is not out.
    with WorkerGroup(env=env(WF_FAILPOINTS="before_publish:1")) as doomed_group:
        doomed = doomed_group.start("doomed")
        incident_id = start(tmp_path, then="next")
        wait_until(lambda: "signal 9" in doomed.log_text() or doomed.process.poll() is not None,
                   what="the worker to die at its first publish")
        doomed_group.kill(doomed)
    held = ExternalResource.objects.get(incident_id=incident_id)
    assert held.status == "HELD"
    next_hop = MessageLog.objects.get(incident_id=incident_id, destination="res_next")
    assert next_hop.status == MessageStatus.QUEUED  # committed, never published
    # When a worker starts again: the relay publishes the next hop, which completes.
    with WorkerGroup(env=env()) as group:
        group.start("survivor")
        released_once(incident_id, tmp_path)
    assert lines(tmp_path / "calls.log") == ["job-1"]  # nobody died inside the release
    assert MessageLog.objects.get(incident_id=incident_id, destination="res_start").attempts == 1


def test_a_worker_killed_inside_the_release_handler_after_its_side_effect_releases_once(
        transactional_db, broker, tmp_path):
    (tmp_path / "block").touch()  # the release handler waits after cancelling the job
    with WorkerGroup(env=env()) as group:
        doomed = group.start("doomed")
        incident_id = start(tmp_path, then="complete")
        wait_until(lambda: lines(tmp_path / "calls.log"), what="the release handler to run")
        group.kill(doomed)
        (tmp_path / "unblock").touch()
        assert ExternalResource.objects.get(incident_id=incident_id).status == "RELEASING"
        group.start("survivor")
        released_once(incident_id, tmp_path)
    # The handler ran twice (killed once, then on the redelivery); its cancel took effect once.
    assert lines(tmp_path / "calls.log") == ["job-1", "job-1"]
