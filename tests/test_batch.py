"""The fake batch scheduler and the batch workflow: a job held as an external resource,
released by the workflow when done, cancelled in the scheduler when the incident is killed."""
from __future__ import annotations

import multiprocessing
import uuid
from collections.abc import Iterator

import pytest
from django.db import connections

from incidents import workflow
from incidents.engine import operations, registry
from incidents.models import (
    ExternalResource,
    Incident,
    IncidentStatus,
    MessageLog,
    MessageStatus,
    ResourceStatus,
)
from incidents.processes import WorkerGroup, worker_env
from workflows import batch, batch_scheduler

from .conftest import TEST_MODULES, ended, wait_until

registry.load_workflow_modules(["workflows.batch"])

pytestmark = pytest.mark.usefixtures("broker")


@pytest.fixture
def batch_workers(transactional_db, broker) -> Iterator[WorkerGroup]:
    modules = f"{TEST_MODULES},workflows.batch"
    with WorkerGroup(env=worker_env({"WORKFLOW_MODULES": modules})) as group:
        yield group


# -- the scheduler ----------------------------------------------------------------------------

def test_a_job_runs_from_its_first_check_and_is_done_at_its_nth():
    job_id = batch_scheduler.submit("model run", polls_until_done=3)
    assert batch_scheduler.job(job_id)["state"] == batch_scheduler.QUEUED
    assert [batch_scheduler.status(job_id) for _ in range(4)] == [
        "RUNNING", "RUNNING", "DONE", "DONE"]
    assert batch_scheduler.job(job_id)["polls"] == 3  # checks of a finished job change nothing


def test_cancel_stops_a_running_job_and_changes_nothing_the_second_time():
    job_id = batch_scheduler.submit(polls_until_done=5)
    batch_scheduler.status(job_id)
    first = batch_scheduler.cancel(job_id)
    again = batch_scheduler.cancel(job_id)
    assert first["state"] == again["state"] == batch_scheduler.CANCELLED
    assert again["finished_at"] == first["finished_at"]
    assert batch_scheduler.status(job_id) == batch_scheduler.CANCELLED


def test_cancel_leaves_a_finished_job_done():
    job_id = batch_scheduler.submit(polls_until_done=1)
    assert batch_scheduler.status(job_id) == batch_scheduler.DONE
    assert batch_scheduler.cancel(job_id)["state"] == batch_scheduler.DONE


def test_submitting_again_with_the_same_key_finds_the_same_job():
    key = f"{uuid.uuid4()}/batch"
    first = batch_scheduler.submit(key=key, polls_until_done=2)
    batch_scheduler.status(first)
    again = batch_scheduler.submit(key=key, polls_until_done=2)
    assert again == first
    assert batch_scheduler.job(first)["polls"] == 1  # not reset by the second submit
    assert batch_scheduler.submit(key=f"{uuid.uuid4()}/batch") != first


@pytest.mark.parametrize("job_id", ["../../etc/passwd", "not-a-job"])
def test_an_id_that_is_not_a_job_is_refused_with_what_it_should_be(job_id):
    with pytest.raises(batch_scheduler.UnknownJob, match="is not a job id"):
        batch_scheduler.cancel(job_id)


def test_an_unknown_job_says_where_it_was_looked_for():
    with pytest.raises(batch_scheduler.UnknownJob, match=r"no job .* in .*fake_scheduler"):
        batch_scheduler.status("00000000-0000-4000-8000-000000000000")


def _check_many_times(job_id: str, times: int) -> None:
    try:
        for _ in range(times):
            batch_scheduler.status(job_id)
    finally:
        connections.close_all()


def test_checks_from_several_processes_at_once_are_all_counted():
    job_id = batch_scheduler.submit(polls_until_done=10_000)
    context = multiprocessing.get_context("fork")
    processes = [context.Process(target=_check_many_times, args=(job_id, 50)) for _ in range(4)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    assert [p.exitcode for p in processes] == [0, 0, 0, 0]
    assert batch_scheduler.job(job_id)["polls"] == 200  # no read-modify-write was lost


# -- the workflow on workers ------------------------------------------------------------------

def resource_of(incident_id: str) -> ExternalResource:
    return ExternalResource.objects.get(incident_id=incident_id)


@pytest.mark.e2e
def test_the_batch_workflow_releases_its_finished_job_itself_and_completes(batch_workers):
    batch_workers.start("batch1")
    incident_id = operations.start_incident(kind=batch.KIND, name="batch job",
                                            parameters={"poll_seconds": 0.2, "job_polls": 3})
    incident = wait_until(lambda: ended(incident_id), what="the batch incident to complete")
    assert isinstance(incident, Incident) and incident.status == IncidentStatus.COMPLETE
    resource = resource_of(incident_id)
    assert (resource.kind, resource.release_queue) == ("batch_job", "batch_cancel")
    assert resource.registered_by == "submit_handler"
    assert resource.status == ResourceStatus.RELEASED and resource.released_at is not None
    assert resource.release_attempts == 0  # ReleaseResource: no release message was needed
    assert batch_scheduler.job(resource.ref)["state"] == batch_scheduler.DONE
    assert not MessageLog.objects.filter(incident_id=incident_id, destination="batch_cancel").exists()
    assert MessageLog.objects.filter(incident_id=incident_id, destination="batch_poll").count() == 3


@pytest.mark.e2e
def test_killing_the_incident_cancels_its_running_job_in_the_scheduler(batch_workers):
    batch_workers.start("batch1")
    incident_id = operations.start_incident(kind=batch.KIND, name="batch job to kill",
                                            parameters={"poll_seconds": 0.2, "job_polls": 100_000})
    job_id = wait_until(lambda: ExternalResource.objects.filter(incident_id=incident_id)
                        .values_list("ref", flat=True).first(), what="the job to be registered")
    assert isinstance(job_id, str)
    wait_until(lambda: batch_scheduler.job(job_id)["state"] == batch_scheduler.RUNNING,
               what="the job to run")

    operations.kill_incident(incident_id, reason="stop the model", by="op")

    resource = wait_until(lambda: (r := resource_of(incident_id)).status == ResourceStatus.RELEASED
                          and r, what="the job's release to be handled")
    assert isinstance(resource, ExternalResource)
    assert batch_scheduler.job(job_id)["state"] == batch_scheduler.CANCELLED
    assert Incident.objects.get(pk=incident_id).status == IncidentStatus.KILLED
    releases = MessageLog.objects.filter(incident_id=incident_id, destination="batch_cancel")
    assert [(str(r.pk), r.status) for r in releases] == [
        (str(resource.release_message), MessageStatus.COMPLETE)]
    assert resource.release_attempts == 1
    release_body = releases.get().body
    assert release_body["Resource"]["ref"] == job_id and release_body["Resource"]["kind"] == "batch_job"


@pytest.mark.e2e
def test_cancelling_the_incident_cancels_its_job_too(batch_workers):
    batch_workers.start("batch1")
    incident_id = workflow.CreateIncident(name="batch job to cancel", kind=batch.KIND)
    workflow.send({"IncidentID": incident_id, "poll_seconds": 0.2, "job_polls": 100_000},
                  "batch_submit")
    workflow.FlushMessages()
    job_id = wait_until(lambda: ExternalResource.objects.filter(incident_id=incident_id)
                        .values_list("ref", flat=True).first(), what="the job to be registered")
    assert isinstance(job_id, str)
    operations.cancel_incident(incident_id, reason="not needed", by="op")
    wait_until(lambda: resource_of(incident_id).status == ResourceStatus.RELEASED,
               what="the job's release to be handled")
    assert batch_scheduler.job(job_id)["state"] == batch_scheduler.CANCELLED
    assert Incident.objects.get(pk=incident_id).status == IncidentStatus.CANCELLED
