"""Durable timers: send(delay=...) / send(not_before=...) held in the outbox until due."""
from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections.abc import Iterator

import pytest
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from incidents import workflow
from incidents.engine import cleanup, dispatch, ledger, operations, outbox, publisher, registry
from incidents.engine.runs import Result
from incidents.exceptions import MessageError, MessageTypeError
from incidents.models import Incident, IncidentStatus, MessageLog, MessageStatus
from incidents.processes import WorkerGroup, worker_env

from .conftest import TEST_MODULES, ended, staff, wait_until

registry.load_workflow_modules(["tests.workflows.timers", "workflows.polling"])

pytestmark = pytest.mark.usefixtures("broker")


@pytest.fixture
def timer_workers(transactional_db, broker) -> Iterator[WorkerGroup]:
    modules = f"{TEST_MODULES},tests.workflows.timers,workflows.polling"
    with WorkerGroup(env=worker_env({"WORKFLOW_MODULES": modules})) as group:
        yield group


def send_timer(incident_id: str, delay: float, **fields) -> MessageLog:
    message_id = workflow.send({"IncidentID": incident_id, **fields}, "timer_target",
                               delay=delay)
    workflow.FlushMessages()
    return MessageLog.objects.get(pk=message_id)


def handled(message_id: str) -> MessageLog | None:
    row = MessageLog.objects.get(pk=message_id)
    return row if row.status == MessageStatus.COMPLETE else None


# -- sending ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("kwargs", "error", "says"), [
    ({"delay": 1, "not_before": timezone.now()}, MessageError, "not both"),
    ({"delay": -1}, MessageError, ">= 0"),
    ({"delay": float("nan")}, MessageError, "finite"),
    ({"delay": "30"}, MessageTypeError, "number of seconds"),
    ({"delay": True}, MessageTypeError, "number of seconds"),
    ({"not_before": dt.datetime(2030, 1, 1)}, MessageError, "no time zone"),
    ({"not_before": "2030-01-01"}, MessageTypeError, "datetime with a time zone"),
])
def test_a_bad_delay_or_due_time_is_refused_with_what_to_fix(incident_id, kwargs, error, says):
    with pytest.raises(error, match=says):
        workflow.send({"IncidentID": incident_id}, "timer_target", **kwargs)
    assert not MessageLog.objects.exists()


def test_a_timer_is_logged_queued_with_its_due_time_and_not_published(incident_id):
    before = timezone.now()
    row = send_timer(incident_id, 3600)
    assert row.status == MessageStatus.QUEUED  # published rows are marked SENT
    assert before + dt.timedelta(seconds=3600) <= row.not_before == row.submitted
    assert outbox.relay_once() == 0  # nor does the relay take it
    assert MessageLog.objects.get(pk=row.pk).status == MessageStatus.QUEUED


def test_a_due_time_already_past_and_a_zero_delay_are_published_at_once(incident_id):
    past = workflow.send({"IncidentID": incident_id}, "timer_target",
                         not_before=timezone.now() - dt.timedelta(seconds=1))
    plain = workflow.send({"IncidentID": incident_id}, "timer_target", delay=0)
    workflow.FlushMessages()
    assert MessageLog.objects.get(pk=past).status == MessageStatus.SENT
    row = MessageLog.objects.get(pk=plain)
    assert row.status == MessageStatus.SENT and row.not_before is None


def test_a_due_timer_is_taken_by_one_timer_pass_only(incident_id):
    row = send_timer(incident_id, 60)
    assert ledger.take_due_timers(timezone.now(), limit=10) == []  # not due yet
    later = timezone.now() + dt.timedelta(seconds=61)
    taken = ledger.take_due_timers(later, limit=10)
    assert [t.pk for t in taken] == [row.pk]
    assert ledger.take_due_timers(later + dt.timedelta(seconds=1), limit=10) == []
    assert MessageLog.objects.get(pk=row.pk).submitted == later  # the relay's, if unpublished


def test_two_timer_passes_at_once_never_take_one_timer_twice(transactional_db):
    incident_id = workflow.CreateIncident(name="many timers", kind="TEST")
    due = timezone.now() - dt.timedelta(seconds=1)
    MessageLog.objects.bulk_create([
        MessageLog(id=uuid.uuid4(), incident_id=incident_id, destination="timer_target",
                   status=MessageStatus.QUEUED, submitted=due, not_before=due, body={})
        for _ in range(400)])
    taken: list[list[str]] = [[], []]

    def take(mine: list[str]) -> None:
        try:
            while rows := ledger.take_due_timers(timezone.now(), limit=7):
                mine += [str(r.pk) for r in rows]
        finally:
            connections.close_all()

    threads = [threading.Thread(target=take, args=(mine,)) for mine in taken]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not set(taken[0]) & set(taken[1])
    assert len(taken[0]) + len(taken[1]) == 400


def test_pending_timers_of_another_incident_change_nothing_a_hop_does(transactional_db):
    def one_hop() -> list[str]:
        incident_id = workflow.CreateIncident(name="hop", kind="TEST")
        workflow.setIncidentActive(incident_id)
        message = {"IncidentID": incident_id, "left": 2}
        workflow.send(message=message, queue="probe_chain")
        workflow.FlushMessages()
        publisher.for_this_thread().take_published()  # no SENT marks due in this commit
        with CaptureQueriesContext(connection) as queries:
            assert dispatch.deliver("probe_chain", message).result is Result.COMPLETE
        return [q["sql"].split()[0] for q in queries.captured_queries]

    without = one_hop()
    other = workflow.CreateIncident(name="10,000 timers", kind="TEST")
    due = timezone.now() + dt.timedelta(hours=1)
    MessageLog.objects.bulk_create([
        MessageLog(id=uuid.uuid4(), incident_id=other, destination="timer_target",
                   status=MessageStatus.QUEUED, submitted=due, not_before=due, body={})
        for _ in range(10_000)], batch_size=2000)
    assert one_hop() == without


# -- ending the incident ---------------------------------------------------------------------

def test_a_cancel_drops_pending_timers_and_its_cleanup_does_not_wait_for_them(incident_id):
    row = send_timer(incident_id, 3600)
    operations.cancel_incident(incident_id, reason="done early", by="op")
    row.refresh_from_db()
    assert row.status == MessageStatus.NOT_PROCESSED
    assert row.comment == "timer dropped: incident cancelled"
    cleanup_message = MessageLog.objects.get(incident_id=incident_id,
                                             destination=registry.CLEANUP_QUEUE).body
    assert not cleanup.must_wait(cleanup_message)


def test_a_kill_drops_pending_timers(incident_id):
    row = send_timer(incident_id, 3600)
    report = operations.kill_incident(incident_id, reason="stop", by="op")
    assert report.killed and report.stopped_messages == 0  # never published: nothing to revoke
    row.refresh_from_db()
    assert row.status == MessageStatus.NOT_PROCESSED and "killed" in row.comment


def test_a_complete_drops_pending_timers(incident_id):
    row = send_timer(incident_id, 3600)
    workflow.Complete(incident_id)
    workflow.FlushMessages()
    row.refresh_from_db()
    assert row.status == MessageStatus.NOT_PROCESSED
    assert row.comment == "timer dropped: incident complete"


def test_a_timer_set_by_the_run_that_completes_its_incident_is_dropped(incident_id):
    message_id = workflow.send({"IncidentID": incident_id, "delay": 3600, "complete": True},
                               "timer_start")
    workflow.FlushMessages()
    body = MessageLog.objects.get(pk=message_id).body
    assert dispatch.deliver("timer_start", body).result is Result.COMPLETE
    assert Incident.objects.get(pk=incident_id).status == IncidentStatus.COMPLETE
    timer = MessageLog.objects.get(incident_id=incident_id, destination="timer_target")
    assert timer.status == MessageStatus.NOT_PROCESSED


def test_a_timer_dropped_by_a_failure_waits_for_its_time_again_after_a_resume(incident_id):
    row = send_timer(incident_id, 3600)
    assert ledger.end(incident_id, IncidentStatus.ERROR, "a handler failed", by="test")
    failed_at = Incident.objects.get(pk=incident_id).completed_at
    assert MessageLog.objects.get(pk=row.pk).status == MessageStatus.NOT_PROCESSED
    with transaction.atomic():  # as a Resume does (it locks the rows on PostgreSQL)
        [again] = ledger.requeue_for_resume(incident_id, failed_at=failed_at, max_attempts=5,
                                            comment="resumed")
    assert again.pk == row.pk and again.status == MessageStatus.QUEUED
    assert again.submitted == row.not_before  # for the timer loop, not the relay, to publish


def test_the_incident_page_shows_a_pending_timers_due_time(incident_id):
    row = send_timer(incident_id, 3600)
    viewer = staff("viewer", "view_incident")
    html = viewer.get(reverse("admin:incidents_incident_change",
                              args=[incident_id])).content.decode()
    due = timezone.localtime(row.not_before).strftime("%H:%M:%S")
    assert f"due {due}" in html


# -- on workers -------------------------------------------------------------------------------

@pytest.mark.e2e
def test_a_timer_is_not_delivered_before_its_time(timer_workers):
    timer_workers.start("timers1")
    incident_id = workflow.CreateIncident(name="timer", kind="TEST")
    row = send_timer(incident_id, 1.5)
    done = wait_until(lambda: handled(str(row.pk)), what="the timer to fire")
    assert isinstance(done, MessageLog) and done.received is not None
    assert done.received >= row.not_before
    assert done.attempts == 1


@pytest.mark.e2e
def test_a_failing_handlers_delayed_send_never_fires(timer_workers):
    timer_workers.start("timers1")
    failing = workflow.CreateIncident(name="fails after sending a timer", kind="TEST")
    workflow.send({"IncidentID": failing, "delay": 0.2, "fail": True}, "timer_start")
    workflow.FlushMessages()
    wait_until(lambda: Incident.objects.get(pk=failing).status == IncidentStatus.ERROR,
               what="the handler to fail")
    # A later timer of another incident fires: the failed one's would have fired before it.
    witness = workflow.CreateIncident(name="witness", kind="TEST")
    row = send_timer(witness, 0.5)
    wait_until(lambda: handled(str(row.pk)), what="the witness timer to fire")
    assert not MessageLog.objects.filter(incident_id=failing,
                                         destination="timer_target").exists()


@pytest.mark.e2e
def test_a_timer_fires_after_every_worker_restarted_before_it_was_due(timer_workers):
    first = timer_workers.start("timers1")
    incident_id = workflow.CreateIncident(name="timer across restarts", kind="TEST")
    row = send_timer(incident_id, 8)
    first.stop()
    wait_until(lambda: timezone.now() > row.not_before, what="the due time to pass")
    assert MessageLog.objects.get(pk=row.pk).status == MessageStatus.QUEUED  # nobody held it
    timer_workers.start("timers2")
    done = wait_until(lambda: handled(str(row.pk)), what="the timer to fire on the new worker")
    assert isinstance(done, MessageLog) and done.received >= row.not_before


@pytest.mark.e2e
def test_two_workers_deliver_each_due_timer_once(timer_workers):
    workers = [timer_workers.start("timers1"), timer_workers.start("timers2")]
    incident_id = workflow.CreateIncident(name="timers on two workers", kind="TEST")
    workflow.send({"IncidentID": incident_id, "delay": 1.0, "count": 60}, "timer_start")
    workflow.FlushMessages()
    wait_until(lambda: MessageLog.objects.filter(
        incident_id=incident_id, destination="timer_target",
        status=MessageStatus.COMPLETE).count() == 60, what="all 60 timers to be handled")
    rows = MessageLog.objects.filter(incident_id=incident_id, destination="timer_target")
    assert all(r.attempts == 1 and r.received >= r.not_before for r in rows)
    logs = "".join(worker.log_text() for worker in workers)
    assert "duplicate delivery dropped" not in logs  # no timer was published twice


@pytest.mark.e2e
def test_a_cancelled_incidents_cleanup_does_not_wait_for_its_timers(timer_workers):
    timer_workers.start("timers1")
    incident_id = workflow.CreateIncident(name="cancelled with a timer", kind="TEST")
    row = send_timer(incident_id, 3600)
    operations.cancel_incident(incident_id, reason="no longer needed", by="op")
    incident = wait_until(lambda: ended(incident_id), timeout=60,
                          what="the cleanup (it would wait 300 s for a pending timer)")
    assert isinstance(incident, Incident) and incident.status == IncidentStatus.CANCELLED
    assert MessageLog.objects.get(pk=row.pk).status == MessageStatus.NOT_PROCESSED


@pytest.mark.e2e
def test_the_polling_workflow_polls_with_timers_until_its_job_is_done(timer_workers):
    timer_workers.start("timers1")
    incident_id = workflow.CreateIncident(name="polling", kind="TEST")
    workflow.send({"IncidentID": incident_id, "poll_seconds": 0.2, "job_polls": 3},
                  "polling_start")
    workflow.FlushMessages()
    incident = wait_until(lambda: ended(incident_id), what="the polling incident to complete")
    assert isinstance(incident, Incident) and incident.status == IncidentStatus.COMPLETE
    checks = MessageLog.objects.filter(incident_id=incident_id, destination="polling_check")
    assert checks.count() == 3
    assert all(c.not_before is not None and c.received >= c.not_before for c in checks)
