"""Delivering a message: activation, duplicates, ended incidents, atomic handlers."""
from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from incidents import workflow
from incidents.engine import dispatch, locks, operations, publisher, registry, runs
from incidents.engine.context import HandlerRun
from incidents.engine.runs import Result
from incidents.exceptions import Deferred
from incidents.models import Incident, IncidentStatus, Lock, MessageLog, MessageStatus
from incidents.testing import run_until_idle

pytestmark = pytest.mark.usefixtures("broker")


def sent(incident_id, queue, **fields):
    message = {"IncidentID": incident_id, **fields}
    workflow.send(message=message, queue=queue)
    workflow.FlushMessages()
    return message


def test_an_incident_becomes_active_when_its_first_message_is_handled(incident_id):
    message = sent(incident_id, "probe_chain", left=1)
    assert Incident.objects.get(pk=incident_id).status == IncidentStatus.PENDING
    assert dispatch.deliver("probe_chain", message).result is Result.COMPLETE
    incident = Incident.objects.get(pk=incident_id)
    assert incident.status == IncidentStatus.ACTIVE and incident.activated_at


def test_a_handled_message_records_times_consumer_and_duration(incident_id):
    message = sent(incident_id, "probe_chain", left=1)
    dispatch.deliver("probe_chain", message)
    row = MessageLog.objects.get(pk=message["MessageID"])
    assert row.status == MessageStatus.COMPLETE and row.attempts == 1
    assert row.submitted <= row.received <= row.completed
    assert row.duration is not None and row.duration >= 0 and ":" in row.consumer


def test_a_second_delivery_of_a_handled_message_has_no_effect(incident_id):
    message = sent(incident_id, "probe_chain", left=3)
    dispatch.deliver("probe_chain", message)
    assert dispatch.deliver("probe_chain", message).result is Result.DUPLICATE
    assert dispatch.deliver("probe_chain", message, redelivered=True).result is Result.DUPLICATE
    assert MessageLog.objects.filter(destination="probe_chain").count() == 2


def test_a_redelivered_message_whose_run_died_is_run_again_and_sends_once(incident_id):
    message = sent(incident_id, "probe_chain", left=3)
    # A worker claimed it and died before committing.
    MessageLog.objects.filter(pk=message["MessageID"]).update(
        status=MessageStatus.PROCESSING, attempts=1)
    assert dispatch.deliver("probe_chain", message).result is Result.DUPLICATE  # not redelivered
    assert dispatch.deliver("probe_chain", message, redelivered=True).result is Result.COMPLETE
    assert MessageLog.objects.get(pk=message["MessageID"]).attempts == 2
    assert MessageLog.objects.filter(destination="probe_chain").count() == 2


def test_a_run_overtaken_by_another_delivery_commits_nothing(incident_id):
    message = sent(incident_id, "probe_count")

    @workflow.handler
    def overtaken(msg):
        workflow.Persist.Put(incident_id, {"late": True})
        # Meanwhile the message is redelivered elsewhere and claimed again.
        MessageLog.objects.filter(pk=msg["MessageID"]).update(attempts=2)

    from incidents.engine import registry

    spec = registry.spec_of(overtaken)
    outcome = runs.run_and_commit(
        spec, HandlerRun(originator="overtaken", message_id=message["MessageID"],
                                  incident_id=incident_id, attempt=1), message)
    assert outcome.result is Result.DUPLICATE
    assert workflow.Persist.Get(incident_id, ignoreOriginator=True) == []


def unclaimed_run(handler, message) -> HandlerRun:
    return HandlerRun(originator=handler.__name__, message_id=message["MessageID"],
                      incident_id=message["IncidentID"], queue="probe_count", attempt=1,
                      claimed=False)


def test_a_first_delivery_to_a_plain_handler_writes_once_after_its_handler(incident_id):
    workflow.setIncidentActive(incident_id)
    message = sent(incident_id, "probe_chain", left=2)
    publisher.for_this_thread().take_published()  # no SENT marks due in this commit
    with CaptureQueriesContext(connection) as queries:
        assert dispatch.deliver("probe_chain", message).result is Result.COMPLETE
    statements = [q["sql"].split()[0] for q in queries.captured_queries]
    # A read before the handler; after it, one transaction: the finish that also claims,
    # and the next hop's log row (on PostgreSQL both in one statement, its own transaction).
    one_write = ["WITH"] if connection.vendor == "postgresql" else ["BEGIN", "UPDATE", "INSERT"]
    assert [s for s in statements if s != "COMMIT"] == ["SELECT", *one_write]
    row = MessageLog.objects.get(pk=message["MessageID"])
    assert (row.status, row.attempts) == (MessageStatus.COMPLETE, 1)
    assert row.received <= row.completed and ":" in row.consumer


def test_a_run_that_lasts_is_marked_processing_while_it_runs(incident_id, settings):
    settings.WORKFLOW_CLAIM_AFTER_SECONDS = 0.05
    message = sent(incident_id, "probe_count")
    seen = []

    @workflow.handler
    def lasts(msg):
        deadline = time.monotonic() + 30
        while not seen and time.monotonic() < deadline:
            row = MessageLog.objects.get(pk=msg["MessageID"])
            if row.status == MessageStatus.PROCESSING:
                seen.append((row.attempts, row.consumer))
            time.sleep(0.01)

    run = unclaimed_run(lasts, message)
    assert runs.run_and_commit(registry.spec_of(lasts), run, message).result is Result.COMPLETE
    assert seen and seen[0][0] == 1 and ":" in seen[0][1]
    row = MessageLog.objects.get(pk=message["MessageID"])
    assert (row.status, row.attempts) == (MessageStatus.COMPLETE, 1)


def test_a_kill_during_an_unclaimed_run_drops_its_effects(incident_id):
    message = sent(incident_id, "probe_count")

    @workflow.handler
    def killed(msg):
        workflow.send(message={"IncidentID": incident_id, "left": 1}, queue="probe_chain")
        operations.kill_incident(incident_id, reason="race", by="operator")

    run = unclaimed_run(killed, message)
    assert runs.run_and_commit(registry.spec_of(killed), run, message).result is Result.DUPLICATE
    assert not MessageLog.objects.filter(destination="probe_chain").exists()
    assert MessageLog.objects.get(pk=message["MessageID"]).status == MessageStatus.NOT_PROCESSED


def test_of_two_unclaimed_copies_of_a_message_the_first_to_commit_wins(incident_id):
    message = sent(incident_id, "probe_count")

    @workflow.handler
    def slower_copy(msg):
        # Another copy (the relay's) is handled while this one runs, and commits first.
        assert dispatch.deliver("probe_count", dict(msg)).result is Result.COMPLETE
        workflow.Persist.Put(incident_id, {"counted": "again"})

    run = unclaimed_run(slower_copy, message)
    outcome = runs.run_and_commit(registry.spec_of(slower_copy), run, message)
    assert outcome.result is Result.DUPLICATE
    assert workflow.Persist.Get(incident_id, ignoreOriginator=True) == [{"counted": True}]
    row = MessageLog.objects.get(pk=message["MessageID"])
    assert (row.status, row.attempts) == (MessageStatus.COMPLETE, 1)


def test_messages_for_an_ended_incident_are_logged_not_processed(incident_id):
    message = sent(incident_id, "probe_chain", left=3)
    workflow.Cancel(incident_id, reason="called off")
    workflow.FlushMessages()
    assert dispatch.deliver("probe_chain", message).result is Result.NOT_PROCESSED
    row = MessageLog.objects.get(pk=message["MessageID"])
    assert row.status == MessageStatus.NOT_PROCESSED
    assert row.comment == f"incident {incident_id} is CANCELLED"
    assert MessageLog.objects.filter(destination="probe_chain").count() == 1


@pytest.mark.parametrize(
    "body", [None, "text", [1], {}, {"IncidentID": "x", "MessageID": "y"},
             {"IncidentID": "00000000-0000-0000-0000-000000000000",
              "MessageID": "00000000-0000-0000-0000-000000000001"}],
)
def test_a_foreign_or_broken_message_is_rejected_without_raising(transactional_db, body):
    assert dispatch.deliver("probe_chain", body).result is Result.REJECTED


@contextmanager
def meanwhile(*actions: Callable[[], object]) -> Iterator[None]:
    """Run `actions` in another thread (with its own connection) a moment after entering."""
    def run() -> None:
        for action in actions:
            action()
        connection.close()

    other = threading.Timer(0.2, run)
    other.start()
    try:
        yield
    finally:
        other.join()


def busy_merge(incident_id: str) -> tuple[dict, Callable[[], bool]]:
    """A merge message whose @atomic lock "someone" holds, and how to release it."""
    message = sent(incident_id, "quicksort_merge", node="rL", sorted=[1])
    assert locks.backend().acquire("_atomic:merge_handler", incident_id, "someone", 60)
    return message, lambda: locks.backend().release("_atomic:merge_handler", incident_id,
                                                    "someone")


def test_an_atomic_handler_busy_for_the_incident_defers_with_a_growing_delay(incident_id,
                                                                              settings):
    settings.WORKFLOW_ATOMIC_WAIT_SECONDS = 0.01
    message, release = busy_merge(incident_id)
    delays = []
    for retries in range(6):
        with pytest.raises(Deferred) as deferred:
            dispatch.deliver("quicksort_merge", message, retries=retries)
        delays.append(deferred.value.delay)
    assert delays[-1] > delays[0] * 4
    assert MessageLog.objects.get(pk=message["MessageID"]).status == MessageStatus.SENT
    release()
    assert dispatch.deliver("quicksort_merge", message).result is Result.COMPLETE
    assert not Lock.objects.exists()


def test_an_atomic_handler_busy_for_a_moment_is_waited_for_in_the_worker(incident_id, settings):
    settings.WORKFLOW_ATOMIC_WAIT_SECONDS = 30
    message, release = busy_merge(incident_id)
    # The holder finishes while the delivery waits: it runs, without going back to the broker.
    with meanwhile(release):
        assert dispatch.deliver("quicksort_merge", message).result is Result.COMPLETE
    assert not Lock.objects.exists()


def test_an_atomic_delivery_does_not_run_for_an_incident_that_ended_while_it_waited(
        incident_id, settings):
    settings.WORKFLOW_ATOMIC_WAIT_SECONDS = 30
    message, release = busy_merge(incident_id)
    # What a failing or completing holder does: end the incident, then give the lock back.
    with meanwhile(lambda: operations.cancel_incident(incident_id, reason="meanwhile"), release):
        assert dispatch.deliver("quicksort_merge", message).result is Result.NOT_PROCESSED
    row = MessageLog.objects.get(pk=message["MessageID"])
    assert row.status == MessageStatus.NOT_PROCESSED and "CANCELLED" in row.comment
    assert not Lock.objects.filter(label="_atomic:merge_handler").exists()


@pytest.mark.timeout(10)  # it fails if the delivery waits for the lock
def test_a_retried_atomic_delivery_does_not_wait_in_the_worker_again(incident_id, settings):
    settings.WORKFLOW_ATOMIC_WAIT_SECONDS = 30
    message, _release = busy_merge(incident_id)
    with pytest.raises(Deferred):
        dispatch.deliver("quicksort_merge", message, retries=1)


def test_an_expired_lock_of_a_dead_worker_does_not_block_an_atomic_handler(incident_id):
    message = sent(incident_id, "quicksort_merge", node="rL", sorted=[1])
    assert locks.backend().acquire("_atomic:merge_handler", incident_id, "dead-worker", 60)
    Lock.objects.update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    assert dispatch.deliver("quicksort_merge", message).result is Result.COMPLETE


def test_run_until_idle_runs_a_whole_workflow(incident_id):
    sent(incident_id, "A_queue")
    assert run_until_idle() == 3  # A, B, cleanup
    assert Incident.objects.get(pk=incident_id).status == IncidentStatus.COMPLETE


def test_a_message_arriving_on_another_queue_than_it_was_sent_to_is_rejected(incident_id):
    message = sent(incident_id, "probe_chain", left=1)
    assert dispatch.deliver("probe_count", message).result is Result.REJECTED
    assert MessageLog.objects.get(pk=message["MessageID"]).status == MessageStatus.SENT


def test_a_delivery_retried_after_a_database_outage_takes_its_claim_back(incident_id):
    from wfproject.celery import app

    message = sent(incident_id, "probe_chain", left=1)
    # The first try claimed the message, then lost the database before committing.
    MessageLog.objects.filter(pk=message["MessageID"]).update(
        status=MessageStatus.PROCESSING, attempts=1)
    task = app.tasks["workflow.probe_chain"]
    assert task.run(message, retake=True) == "COMPLETE"
    assert MessageLog.objects.get(pk=message["MessageID"]).status == MessageStatus.COMPLETE


def test_a_message_whose_handling_keeps_dying_is_given_up_as_error(incident_id, settings):
    settings.WORKFLOW_MAX_ATTEMPTS = 3
    message = sent(incident_id, "probe_chain", left=1)
    # Three runs claimed it and never finished (killed workers, hard time limits).
    MessageLog.objects.filter(pk=message["MessageID"]).update(
        status=MessageStatus.PROCESSING, attempts=3)
    outcome = dispatch.deliver("probe_chain", message, redelivered=True)
    assert outcome.result is Result.ERROR
    row = MessageLog.objects.get(pk=message["MessageID"])
    assert row.status == MessageStatus.ERROR and "3 attempts ended without a result" in row.comment
    incident = Incident.objects.get(pk=incident_id)
    assert incident.status == IncidentStatus.ERROR and "gave up" in incident.comment
    assert MessageLog.objects.filter(destination="_Cleanup").exists()


def merge_held_by_dead_runs(incident_id, attempts):
    """A merge message whose runs (`attempts` of them) claimed it, took the merge lock, died."""
    message = sent(incident_id, "quicksort_merge", node="rL", sorted=[1])
    MessageLog.objects.filter(pk=message["MessageID"]).update(
        status=MessageStatus.PROCESSING, attempts=attempts)
    assert locks.backend().acquire("_atomic:merge_handler", incident_id,
                                   f"{message['MessageID']}:deadbeef", 60)
    return message


def test_giving_up_on_an_atomic_message_frees_the_lock_its_dead_runs_held(incident_id, settings):
    settings.WORKFLOW_MAX_ATTEMPTS = 2
    message = merge_held_by_dead_runs(incident_id, attempts=2)
    assert dispatch.deliver("quicksort_merge", message, redelivered=True).result is Result.ERROR
    assert not Lock.objects.filter(label="_atomic:merge_handler").exists()


def test_a_takeover_inherits_the_atomic_lock_of_the_run_that_died(incident_id):
    message = merge_held_by_dead_runs(incident_id, attempts=1)
    assert dispatch.deliver("quicksort_merge", message, redelivered=True).result is Result.COMPLETE
    assert not Lock.objects.exists()


def test_another_message_cannot_take_a_dead_runs_lock_before_its_lease_ends(incident_id):
    import uuid

    message = sent(incident_id, "quicksort_merge", node="rL", sorted=[1])
    assert locks.backend().acquire("_atomic:merge_handler", incident_id,
                                   f"{uuid.uuid4()}:deadbeef", 60)
    with pytest.raises(Deferred):
        dispatch.deliver("quicksort_merge", message)


def test_an_atomic_run_that_lost_its_lock_commits_nothing_and_is_retried(incident_id):
    message = sent(incident_id, "quicksort_merge", node="rL", sorted=[1])

    @workflow.handler
    def loses_lock(msg):
        workflow.Persist.Put(incident_id, {"late": True})
        Lock.objects.all().delete()  # the lock store restarted empty mid-run

    from incidents.engine import registry

    spec = registry.spec_of(loses_lock)
    spec.atomic = True
    run = HandlerRun(originator="loses_lock", message_id=message["MessageID"],
                              incident_id=incident_id, attempt=1)
    MessageLog.objects.filter(pk=message["MessageID"]).update(
        status=MessageStatus.PROCESSING, attempts=1)
    assert locks.take("_atomic:loses_lock", incident_id, run.lock_owner)
    run.locks.add(("_atomic:loses_lock", incident_id))
    with pytest.raises(Deferred, match="lost its lock"):
        runs.run_and_commit(spec, run, message)
    assert workflow.Persist.Get(incident_id, ignoreOriginator=True) == []
    assert MessageLog.objects.get(pk=message["MessageID"]).status == MessageStatus.SENT
    locks.renewer.drop("_atomic:loses_lock", incident_id, run.lock_owner)


def test_a_takeover_that_must_wait_for_the_lock_gives_the_claim_back(incident_id):
    import uuid

    message = sent(incident_id, "quicksort_merge", node="rL", sorted=[1])
    MessageLog.objects.filter(pk=message["MessageID"]).update(
        status=MessageStatus.PROCESSING, attempts=1)  # its run died
    assert locks.backend().acquire("_atomic:merge_handler", incident_id, f"{uuid.uuid4()}:x", 60)
    with pytest.raises(Deferred):
        dispatch.deliver("quicksort_merge", message, redelivered=True)
    # The retried copy is not marked redelivered; it must still be handled, not dropped.
    assert MessageLog.objects.get(pk=message["MessageID"]).status == MessageStatus.SENT


def test_an_engine_error_retries_the_message_and_finally_logs_it_error(incident_id, monkeypatch):
    from celery.exceptions import Retry

    from incidents.engine import tasks
    from wfproject.celery import app

    message = sent(incident_id, "probe_chain", left=1)
    task = app.tasks["workflow.probe_chain"]

    def broken(*args, **kwargs):
        raise RuntimeError("engine bug")

    monkeypatch.setattr(dispatch, "deliver", broken)
    with pytest.raises(Retry):  # in a worker: sent back to its queue to be tried again
        task.run(message)
    assert task.run(message, errors=tasks.MAX_ERROR_RETRIES) == "ERROR"
    row = MessageLog.objects.get(pk=message["MessageID"])
    assert row.status == MessageStatus.ERROR and "engine bug" in row.comment
    assert Incident.objects.get(pk=incident_id).status == IncidentStatus.ERROR
