"""External resources: RegisterResource/ReleaseResource, their release when the incident ends
(Complete, Cancel, Kill, ERROR), failed releases and their retry, and the cleanup that waits
for them. The workflow: tests/workflows/resources.py (a fake batch scheduler in a directory).
"""
from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from incidents import workflow
from incidents.engine import (
    audit,
    cleanup,
    diagnosis,
    diagnosis_facts,
    dispatch,
    draining,
    interventions,
    operations,
    registry,
    releases,
    resources,
    resume,
)
from incidents.engine.runs import Result
from incidents.exceptions import MessageError, MessageTypeError, QueueNameError
from incidents.models import (
    ExternalResource,
    Incident,
    IncidentStatus,
    MessageLog,
    MessageStatus,
    ResourceStatus,
)
from incidents.processes import WorkerGroup, worker_env
from incidents.testing import run_until_idle
from tests.workflows.resources import FLAKY_RELEASE_QUEUE, RELEASE_QUEUE

from .conftest import TEST_MODULES, wait_until

registry.load_workflow_modules(["tests.workflows.resources"])

pytestmark = pytest.mark.usefixtures("transactional_db", "broker")


def start(root: Path, jobs: list[str], then: str = "", **fields) -> str:
    return operations.start_incident(kind="TEST", name="resources", queue="res_start",
                                     message={"root": str(root), "jobs": jobs, "then": then,
                                              **fields})


def resource(incident_id: str, ref: str) -> ExternalResource:
    return ExternalResource.objects.get(incident_id=incident_id, ref=ref)


def release_rows(incident_id: str, queue: str = RELEASE_QUEUE) -> list[MessageLog]:
    return list(MessageLog.objects.filter(incident_id=incident_id, destination=queue))


def cancelled(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "cancelled").glob("*"))


def calls(root: Path) -> list[str]:
    path = root / "calls.log"
    return [line.split()[0] for line in path.read_text().splitlines()] if path.exists() else []


def incident(incident_id: str) -> Incident:
    return Incident.objects.get(pk=incident_id)


# -- registering --------------------------------------------------------------------------

def test_a_handlers_registration_is_committed_with_it(tmp_path):
    incident_id = start(tmp_path, ["job-1", "job-2"])
    run_until_idle()
    held = ExternalResource.objects.filter(incident_id=incident_id).order_by("ref")
    assert [(r.ref, r.kind, r.status, r.release_queue, r.registered_by) for r in held] == [
        ("job-1", "fake_job", ResourceStatus.HELD, RELEASE_QUEUE, "res_start"),
        ("job-2", "fake_job", ResourceStatus.HELD, RELEASE_QUEUE, "res_start")]
    assert held[0].data == {"root": str(tmp_path)}
    assert list(resources.outstanding(incident_id).order_by("ref")) == list(held)


def test_a_failing_handler_registers_nothing_and_its_end_releases_nothing(tmp_path):
    incident_id = start(tmp_path, ["job-1"], then="fail")
    run_until_idle(raise_on_error=False)
    assert incident(incident_id).status == IncidentStatus.ERROR
    assert not ExternalResource.objects.filter(incident_id=incident_id).exists()
    assert release_rows(incident_id) == []


def test_a_rerun_of_the_same_message_registers_the_resource_once(tmp_path):
    incident_id = workflow.CreateIncident("rerun", "TEST")
    message_id = workflow.send({"IncidentID": incident_id, "root": str(tmp_path),
                                "jobs": ["job-1"]}, "res_start")
    workflow.FlushMessages()
    body = MessageLog.objects.get(pk=message_id).body
    assert dispatch.deliver("res_start", body).result is Result.COMPLETE
    # As if its commit had been lost to a crash after all: the message is delivered again.
    MessageLog.objects.filter(pk=message_id).update(status=MessageStatus.SENT, attempts=1)
    assert dispatch.deliver("res_start", body, redelivered=True).result is Result.COMPLETE
    assert ExternalResource.objects.filter(incident_id=incident_id).count() == 1
    assert MessageLog.objects.get(pk=message_id).attempts == 2


def test_registering_a_ref_again_updates_it(tmp_path, incident_id):
    workflow.RegisterResource(incident_id, "fake_job", "job-1", RELEASE_QUEUE, {"n": 1})
    workflow.RegisterResource(incident_id, "hpc_job", "job-1", None, {"n": 2})
    (only,) = ExternalResource.objects.filter(incident_id=incident_id)
    assert (only.kind, only.release_queue, only.data, only.status) == (
        "hpc_job", "", {"n": 2}, ResourceStatus.HELD)


def test_a_resource_registered_as_its_incident_is_cancelled_is_released_at_once(tmp_path):
    incident_id = start(tmp_path, ["job-1"], then="cancelled_meanwhile")
    assert dispatch_one(incident_id, "res_start")
    assert incident(incident_id).status == IncidentStatus.CANCELLED
    assert resource(incident_id, "job-1").status == ResourceStatus.RELEASING
    run_until_idle()
    assert resource(incident_id, "job-1").status == ResourceStatus.RELEASED
    assert cancelled(tmp_path) == ["job-1"] and incident(incident_id).cleaned_at is not None


def test_a_released_ref_registered_again_is_held_again(incident_id):
    # As after a Resume: the end released it, and the handler submits it again.
    workflow.RegisterResource(incident_id, "job", "j-1", RELEASE_QUEUE)
    workflow.ReleaseResource(incident_id, "j-1")
    assert resource(incident_id, "j-1").status == ResourceStatus.RELEASED
    workflow.RegisterResource(incident_id, "job", "j-1", RELEASE_QUEUE, {"again": True})
    again = resource(incident_id, "j-1")
    assert (again.status, again.released_at, again.data) == (ResourceStatus.HELD, None,
                                                             {"again": True})


def test_a_registration_outside_a_handler_commits_at_once(incident_id):
    workflow.RegisterResource(incident_id, "transfer", "t-42", data={"bytes": 10})
    row = resource(incident_id, "t-42")
    assert (row.status, row.registered_by, row.data) == (ResourceStatus.HELD, "", {"bytes": 10})


@pytest.mark.parametrize(("args", "error", "says"), [
    (("", "job-1"), MessageTypeError, "kind '' must be a non-empty string"),
    (("job", ""), MessageTypeError, "ref '' must be a non-empty string"),
    (("job", 42), MessageTypeError, "ref 42 must be a string"),
    (("job", "x" * 501), MessageError, "over the limit of 500"),
    (("job", "j", "_Cleanup"), QueueNameError, "reserved for the engine"),
    (("job", "j", "nobody_serves_this"), MessageError, "no handler registered"),
    (("job", "j", None, {"s": {1, 2}}), MessageError, "data"),
    (("job", "j", None, {"big": "x" * 1_100_000}), MessageError, "reference to the data"),
])
def test_bad_registrations_are_refused_with_what_to_fix(incident_id, args, error, says):
    with pytest.raises(error, match=says):
        workflow.RegisterResource(incident_id, *args)
    assert not ExternalResource.objects.exists()


def test_a_registration_for_an_ended_or_unknown_incident_is_refused(incident_id):
    workflow.Cancel(incident_id)
    with pytest.raises(MessageError, match="has ended"):
        workflow.RegisterResource(incident_id, "job", "j")
    with pytest.raises(workflow.UnknownIncident):
        workflow.RegisterResource(str(uuid.uuid4()), "job", "j")


def test_releasing_an_unknown_ref_is_refused_naming_those_it_has(incident_id):
    workflow.RegisterResource(incident_id, "job", "known-1")
    with pytest.raises(MessageError, match=r"no resource 'other'.*'known-1'"):
        workflow.ReleaseResource(incident_id, "other")


def test_a_resource_a_handler_released_is_not_released_again_at_the_end(tmp_path):
    incident_id = start(tmp_path, ["job-1", "job-2"], then="next", release=["job-1"])
    run_until_idle()
    assert incident(incident_id).status == IncidentStatus.COMPLETE
    assert "ReleaseResource" in resource(incident_id, "job-1").comment
    assert [r.body["Resource"]["ref"] for r in release_rows(incident_id)] == ["job-2"]
    assert cancelled(tmp_path) == ["job-2"]


# -- releasing at the end -----------------------------------------------------------------

def end_by(how: str, root: Path) -> str:
    """An incident holding two jobs, ended `how`; nothing run after the ending yet."""
    if how in ("complete", "cancel"):
        incident_id = start(root, ["job-1", "job-2"], then=how)
        assert dispatch_one(incident_id, "res_start")
    elif how == "error":
        incident_id = start(root, ["job-1", "job-2"], then="error_next")
        assert dispatch_one(incident_id, "res_start")
        assert not dispatch_one(incident_id, "res_next")
    else:
        incident_id = start(root, ["job-1", "job-2"])
        assert dispatch_one(incident_id, "res_start")
        operations.kill_incident(incident_id, reason="test", by="tester")
    return incident_id


def dispatch_one(incident_id: str, queue: str) -> bool:
    """Deliver the incident's one message to `queue` in this process; True if it completed."""
    row = MessageLog.objects.get(incident_id=incident_id, destination=queue)
    return dispatch.deliver(queue, row.body).result is Result.COMPLETE


@pytest.mark.parametrize(("how", "status"), [
    ("complete", IncidentStatus.COMPLETE), ("cancel", IncidentStatus.CANCELLED),
    ("error", IncidentStatus.ERROR), ("kill", IncidentStatus.KILLED)])
def test_every_end_sends_one_release_per_held_resource_and_marks_it(tmp_path, how, status):
    incident_id = end_by(how, tmp_path)
    assert incident(incident_id).status == status
    rows = {r.body["Resource"]["ref"]: r for r in release_rows(incident_id)}
    assert sorted(rows) == ["job-1", "job-2"]
    for ref, row in rows.items():
        held = resource(incident_id, ref)
        assert (held.status, held.release_attempts) == (ResourceStatus.RELEASING, 1)
        assert str(held.release_message) == str(row.pk)
        assert row.body["Resource"] == {"id": str(held.pk), "kind": "fake_job", "ref": ref,
                                        "data": {"root": str(tmp_path)}}
    run_until_idle(raise_on_error=False)
    assert {resource(incident_id, ref).status for ref in rows} == {ResourceStatus.RELEASED}
    assert {r.status for r in release_rows(incident_id)} == {MessageStatus.COMPLETE}
    assert sorted(calls(tmp_path)) == cancelled(tmp_path) == ["job-1", "job-2"]
    assert incident(incident_id).status == status and incident(incident_id).cleaned_at


def test_an_ending_after_an_ending_sends_no_second_release(tmp_path):
    incident_id = start(tmp_path, ["job-1"], then="complete")
    run_until_idle()
    assert resource(incident_id, "job-1").status == ResourceStatus.RELEASED
    operations.kill_incident(incident_id, reason="again", by="tester")
    workflow.Cancel(incident_id)
    run_until_idle()
    assert len(release_rows(incident_id)) == 1 and calls(tmp_path) == ["job-1"]
    assert resource(incident_id, "job-1").release_attempts == 1


def test_a_resource_without_release_queue_is_released_at_once(tmp_path):
    incident_id = start(tmp_path, ["job-1"], then="complete", release_queue=None)
    assert dispatch_one(incident_id, "res_start")
    held = resource(incident_id, "job-1")
    assert (held.status, held.release_message, held.release_attempts) == (
        ResourceStatus.RELEASED, None, 0)
    assert "nothing to call" in held.comment and held.released_at is not None
    run_until_idle()
    assert incident(incident_id).cleaned_at is not None


# -- failed releases ----------------------------------------------------------------------

def test_a_failing_release_fails_the_resource_not_the_incident_until_retried(tmp_path):
    (tmp_path / "fail").touch()
    incident_id = start(tmp_path, ["job-1"], then="complete")
    run_until_idle(raise_on_error=False)
    failed, ended = resource(incident_id, "job-1"), incident(incident_id)
    assert ended.status == IncidentStatus.COMPLETE and ended.cleaned_at is None
    assert failed.status == ResourceStatus.FAILED
    assert "refuses to cancel job-1" in failed.comment
    assert release_rows(incident_id)[0].status == MessageStatus.ERROR
    cleanup_row = MessageLog.objects.get(incident_id=incident_id,
                                         destination=registry.CLEANUP_QUEUE)
    assert cleanup_row.status == MessageStatus.COMPLETE  # it ran, but could not finish
    facts = diagnosis_facts.gather(incident_id, inspect_timeout=0.1, read_dead_letters=False)
    found = diagnosis.reasons(facts, ended.completed_at)
    assert [r.kind for r in found] == [diagnosis.RELEASES_OUTSTANDING]
    assert "job-1 failed" in found[0].summary and "retry" in found[0].summary

    (tmp_path / "fail").unlink()
    retried = resources.retry_release(failed.pk, by="alice", reason="scheduler fixed")
    assert (retried.status, retried.release_attempts) == (ResourceStatus.RELEASING, 2)
    assert retried.release_message != failed.release_message
    (action,) = [a for a in audit.history(incident_id) if a.action == "retry_release"]
    assert (action.by, action.reason, action.details["ref"]) == ("alice", "scheduler fixed",
                                                                 "job-1")
    run_until_idle()
    released = resource(incident_id, "job-1")
    assert released.status == ResourceStatus.RELEASED and released.released_at
    assert incident(incident_id).status == IncidentStatus.COMPLETE
    assert incident(incident_id).cleaned_at is not None
    assert calls(tmp_path) == ["job-1", "job-1"] and cancelled(tmp_path) == ["job-1"]


def test_a_drain_is_over_once_its_cleanup_ran_though_a_release_failed(tmp_path):
    (tmp_path / "fail").touch()
    incident_id = start(tmp_path, ["job-1"])
    assert dispatch_one(incident_id, "res_start")
    interventions.drain_incident(incident_id, seconds=60, reason="test", by="tester")
    assert draining.in_progress(incident(incident_id)) is not None
    run_until_idle(raise_on_error=False)
    drained = incident(incident_id)
    assert drained.cleaned_at is None and resource(incident_id, "job-1").status == "FAILED"
    assert draining.in_progress(drained) is None  # not DRAINING: its release failed instead
    assert "job-1 FAILED: " in releases.describe_outstanding(incident_id)


def test_only_a_failed_release_can_be_retried(tmp_path):
    incident_id = start(tmp_path, ["job-1"])
    run_until_idle()
    with pytest.raises(MessageError, match="is HELD; only a FAILED release"):
        resources.retry_release(resource(incident_id, "job-1").pk, by="alice")
    with pytest.raises(MessageError, match="no external resource"):
        resources.retry_release(uuid.uuid4(), by="alice")


def test_a_release_handler_is_retried_before_it_fails(tmp_path):
    (tmp_path / "fail_once").touch()
    incident_id = start(tmp_path, ["job-1"], then="complete", release_queue=FLAKY_RELEASE_QUEUE)
    run_until_idle()
    assert resource(incident_id, "job-1").status == ResourceStatus.RELEASED
    (row,) = release_rows(incident_id, FLAKY_RELEASE_QUEUE)
    assert row.status == MessageStatus.COMPLETE and "retry" in row.comment
    assert calls(tmp_path) == ["job-1", "job-1"]


def test_a_kill_while_a_release_is_in_flight_fails_it_for_a_retry(tmp_path):
    incident_id = start(tmp_path, ["job-1"], then="complete")
    assert dispatch_one(incident_id, "res_start")
    assert resource(incident_id, "job-1").status == ResourceStatus.RELEASING
    operations.kill_incident(incident_id, reason="stop everything", by="bob")
    stopped = resource(incident_id, "job-1")
    assert stopped.status == ResourceStatus.FAILED and "incident killed by bob" in stopped.comment
    run_until_idle()  # the stopped release is dropped; the forced cleanup runs
    assert calls(tmp_path) == [] and incident(incident_id).cleaned_at is None
    assert len(release_rows(incident_id)) == 1
    resources.retry_release(stopped.pk, by="bob")
    run_until_idle()
    assert resource(incident_id, "job-1").status == ResourceStatus.RELEASED
    assert incident(incident_id).cleaned_at is not None and cancelled(tmp_path) == ["job-1"]


def test_a_release_no_worker_takes_fails_when_the_cleanup_stops_waiting(tmp_path):
    incident_id = start(tmp_path, ["job-1"], then="complete")
    assert dispatch_one(incident_id, "res_start")
    cleanup_row = MessageLog.objects.get(incident_id=incident_id,
                                         destination=registry.CLEANUP_QUEUE)
    assert cleanup.stop_waiting(cleanup_row.body, 600)
    failed = resource(incident_id, "job-1")
    assert failed.status == ResourceStatus.FAILED and "no worker took it" in failed.comment


def test_a_failed_incident_is_not_resumed_while_a_release_is_outstanding(tmp_path):
    (tmp_path / "fail").touch()
    incident_id = start(tmp_path, ["job-1"], then="error_next")
    run_until_idle(raise_on_error=False)
    assert incident(incident_id).status == IncidentStatus.ERROR
    assert resource(incident_id, "job-1").status == ResourceStatus.FAILED
    assert "release(s) of its external resources are outstanding" in resume.why_not(
        incident(incident_id))


# -- on real workers ------------------------------------------------------------------------

@pytest.fixture
def resource_workers(transactional_db, broker) -> Iterator[WorkerGroup]:
    modules = f"{TEST_MODULES},tests.workflows.resources"
    with WorkerGroup(env=worker_env({"WORKFLOW_MODULES": modules})) as group:
        yield group


def released_and_cleaned(incident_id: str) -> Incident | None:
    ended = incident(incident_id)
    return ended if ended.cleaned_at and not resources.outstanding(incident_id).exists() \
        else None


@pytest.mark.e2e
def test_workers_release_a_completed_incidents_jobs(resource_workers, tmp_path):
    resource_workers.start("serve", concurrency=2)
    incident_id = start(tmp_path, ["job-1", "job-2"], then="next")
    ended = wait_until(lambda: released_and_cleaned(incident_id), what="jobs released")
    assert ended.status == IncidentStatus.COMPLETE
    assert sorted(calls(tmp_path)) == cancelled(tmp_path) == ["job-1", "job-2"]
    assert {r.status for r in release_rows(incident_id)} == {MessageStatus.COMPLETE}


@pytest.mark.e2e
def test_killing_an_incident_on_workers_cancels_its_running_jobs(resource_workers, tmp_path):
    resource_workers.start("serve")
    incident_id = start(tmp_path, ["job-1"])
    wait_until(lambda: ExternalResource.objects.filter(incident_id=incident_id).exists(),
               what="the job registered")
    operations.kill_incident(incident_id, reason="abort", by="tester")
    ended = wait_until(lambda: released_and_cleaned(incident_id), what="the job cancelled")
    assert ended.status == IncidentStatus.KILLED
    assert calls(tmp_path) == cancelled(tmp_path) == ["job-1"]
    assert resource(incident_id, "job-1").release_attempts == 1
