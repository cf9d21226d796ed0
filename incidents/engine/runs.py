"""Running a handler on a message and committing its effects once."""
from __future__ import annotations

import enum
import logging
import time
import traceback
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.db import DatabaseError, InterfaceError, OperationalError, connection, transaction
from django.utils import timezone

from incidents import conf
from incidents.engine import (
    context,
    failpoints,
    ledger,
    lifecycle,
    locks,
    outbox,
    persist,
    registry,
    results,
    retrying,
    running,
)
from incidents.engine.context import HandlerRun, StagedEnding
from incidents.engine.registry import HandlerSpec
from incidents.exceptions import Deferred
from incidents.models import IncidentStatus, MessageLog, MessageStatus

logger = logging.getLogger(__name__)

#: Errors meaning a service is out of reach for now; the delivery is retried, not failed.
INFRASTRUCTURE_ERRORS: tuple[type[Exception], ...] = (OperationalError, InterfaceError,
                                                       *locks.UNAVAILABLE)


class Result(enum.Enum):
    COMPLETE = "COMPLETE"
    ERROR = "ERROR"
    NOT_PROCESSED = "NOT PROCESSED"
    DUPLICATE = "DUPLICATE"  # already handled, or being handled by another delivery
    REJECTED = "REJECTED"  # not a message of ours: unknown id, no handler, bad shape


@dataclass
class Outcome:
    result: Result
    error: BaseException | None = None


class _Superseded(Exception):
    """Another delivery of the same message claimed it, or a Kill stopped it; this run's
    effects are dropped."""


class RetryScheduled(Deferred):
    """A failed run's message waits for its retry (its log row is SENT again); the task
    sends it back to its queue after `delay` seconds, with the retry count and notes."""

    def __init__(self, message: str, *, delay: float, retried: int, notes: str,
                 **fields: str | None) -> None:
        super().__init__(message, delay=delay, **fields)
        self.retried = retried
        self.notes = notes


class _LockLost(Exception):
    """The run's @atomic lock expired or was taken (lock store restarted); its effects are
    dropped and the message is handled again."""


def run_and_commit(spec: HandlerSpec, run: HandlerRun, message: Any, *, retried: int = 0,
                   notes: str = "") -> Outcome:
    """Run the handler, then commit its effects (or its failure) in one transaction and
    publish what it sent. An unclaimed run is watched, so a long one is marked PROCESSING.
    A failure its queue's policy retries raises RetryScheduled instead (effects dropped);
    `retried`: how many retries came before this run, `notes`: their comment lines."""
    watch = running.watcher.watch(run) if not run.claimed else None
    token = context.current_run.set(run)
    started = time.monotonic()
    error: Exception | None = None
    try:
        spec.func(message)
    except INFRASTRUCTURE_ERRORS:
        raise  # the database or lock store is away: not the handler's fault; retried whole
    except Deferred:  # the engine's own "not now" (a persist lock wait ran out): retried whole
        give_claim_back(run)
        raise
    except Exception as exc:  # user code: any failure becomes an ERROR in the log
        error = exc
    finally:
        context.current_run.reset(token)
        if watch is not None:
            running.watcher.settle(watch)
    duration = time.monotonic() - started
    if isinstance(error, SoftTimeLimitExceeded) and not connection.in_atomic_block:
        connection.close()  # the limit may have struck mid-query and left it unusable
    if error is not None and run.message_id is None:
        return Outcome(Result.ERROR, error)  # a direct call: nothing to record, nothing kept
    if error is not None and retried < retrying.limit(registry.retry_policy(run.queue or ""),
                                                      error):
        return _wait_for_retry(spec, run, error, duration, retried, notes)
    failpoints.hit("before_commit")
    try:
        try:
            to_publish = _commit(spec, run, error, duration, retried, notes)
        except INFRASTRUCTURE_ERRORS:
            raise  # the database is unavailable: the delivery is retried as a whole
        except DatabaseError as refused:
            if error is not None:
                raise
            # The database refused the effects (e.g. a value PostgreSQL cannot store).
            error = refused
            with transaction.atomic():
                to_publish = _commit_failure(spec, run, refused, duration, retried, notes)
    except _Superseded:
        logger.warning("incident %s: message %s was claimed by another delivery or stopped; "
                       "this run's effects are dropped", run.incident_id, run.message_id)
        return Outcome(Result.DUPLICATE)
    except _LockLost:
        give_claim_back(run)  # the retry starts afresh under the lock
        raise Deferred(f"incident {run.incident_id}: {spec.name} lost its lock before "
                       "committing; its effects were dropped and the message is retried",
                       delay=locks.retry_delay(0), incident_id=run.incident_id,
                       handler=spec.name) from None
    release_locks(run)  # committed: the next run may start before we publish
    outbox.publish_on_commit(to_publish, mark_later=run.message_id is not None)
    if error is not None:
        logger.error("incident %s: handler %s failed on message %s: %r", run.incident_id,
                     spec.name, run.message_id, error, exc_info=error)
        return Outcome(Result.ERROR, error)
    return Outcome(Result.COMPLETE)


def _wait_for_retry(spec: HandlerSpec, run: HandlerRun, error: Exception, duration: float,
                    retried: int, notes: str) -> Outcome:
    """Drop the failed run's effects, set its message waiting and raise RetryScheduled."""
    assert run.message_id is not None
    policy, retry = registry.retry_policy(run.queue or ""), retried + 1
    seconds = retrying.delay(policy, error, retry)
    notes = storable("\n".join(filter(None, [
        notes, retrying.note(retry, retrying.limit(policy, error), seconds, error)])))
    if not ledger.wait_for_retry(run.message_id, run.attempt, claimed=run.claimed,
                                 comment=notes[-20_000:],
                                 retry_at=timezone.now() + timedelta(seconds=seconds),
                                 received=run.received, consumer=context.consumer(),
                                 duration=duration):
        logger.warning("incident %s: message %s was claimed by another delivery or stopped; "
                       "its retry is dropped", run.incident_id, run.message_id)
        return Outcome(Result.DUPLICATE)
    release_locks(run)
    logger.warning("incident %s: handler %s failed on message %s (queue %s), %s", run.incident_id,
                   spec.name, run.message_id, run.queue, notes.rsplit("\n", 1)[-1],
                   exc_info=error)
    raise RetryScheduled(f"incident {run.incident_id}: {spec.name} is retried", delay=seconds,
                         retried=retry, notes=notes, incident_id=run.incident_id,
                         queue=run.queue, handler=spec.name)


def give_claim_back(run: HandlerRun) -> None:
    if run.message_id is not None and run.claimed:
        ledger.give_claim_back(run.message_id, run.attempt)


def release_locks(run: HandlerRun) -> None:
    while run.locks:
        label, incident_id = run.locks.pop()
        locks.give_back(label, incident_id, run.lock_owner)


def storable(text: str) -> str:
    """Text from an exception, made storable: PostgreSQL refuses NUL characters."""
    return text.replace("\x00", "\\x00")


def _commit(spec: HandlerSpec, run: HandlerRun, error: Exception | None,
            duration: float, retried: int = 0, notes: str = "") -> list[MessageLog]:
    """Commit the run's effects, or its failure; return the rows to publish."""
    if error is None and not notes and _commits_alone(run):
        rows = _commit_in_one_statement(run, duration)
        failpoints.hit("in_commit")  # one statement: no moment inside it to die at
        return rows
    with transaction.atomic():
        if error is None:
            rows = _commit_success(run, duration, notes)
        else:
            rows = _commit_failure(spec, run, error, duration, retried, notes)
        failpoints.hit("in_commit")  # dying here rolls the whole commit back
    return rows


def _commits_alone(run: HandlerRun) -> bool:
    """Whether the run's effects are only its finish and the messages it sent, and the
    database can commit those in one statement."""
    return (run.message_id is not None and not (
        run.locks or run.in_commit or run.puts or run.endings or run.activate)
        and not conf.get("STORE_TASK_RESULTS") and ledger.commits_in_one_statement())


def _commit_in_one_statement(run: HandlerRun, duration: float) -> list[MessageLog]:
    assert run.message_id is not None
    outbox.mark_published()
    rows = outbox.log_rows(run.outbox)
    if not ledger.finish_and_log(run.message_id, run.attempt, claimed=run.claimed,
                                 received=run.received, consumer=context.consumer(),
                                 duration=duration, rows=rows):
        raise _Superseded
    return rows


def _finish_row(run: HandlerRun, status: str, duration: float, comment: str = "") -> None:
    if run.message_id is None:
        return
    if not ledger.finish(run.message_id, run.attempt, status, claimed=run.claimed,
                         received=run.received, consumer=context.consumer(),
                         duration=duration, comment=comment):
        raise _Superseded


def _still_exclusive(run: HandlerRun) -> None:
    """Fence the commit: a run commits only while it still holds its @atomic and persist
    locks (a lease that ran out may have let another run in)."""
    for label, incident_id in run.locks:
        if label.startswith(("_atomic:", "_persist:")) and not locks.backend().renew(
                label, incident_id, run.lock_owner, locks.lease()):
            raise _LockLost


def _commit_success(run: HandlerRun, duration: float, notes: str = "") -> list[MessageLog]:
    _still_exclusive(run)
    _finish_row(run, MessageStatus.COMPLETE, duration, comment=notes)  # its retries, if any
    if run.activate and run.incident_id is not None:
        ledger.activate(run.incident_id)
    for effect in run.in_commit:
        effect()
    results.record(run, MessageStatus.COMPLETE)
    outbox.mark_published()
    rows = outbox.log_rows(run.outbox)
    persist.insert_staged(run)
    ledger.insert(rows)  # before the endings: an ending drops the timers this run set too
    for ending in run.endings:
        cleanup_message = lifecycle.apply_ending(ending, originator=run.originator)
        if cleanup_message is not None:
            cleanup_rows = outbox.log_rows([*ending.releases, cleanup_message])
            ledger.insert(cleanup_rows)
            rows += cleanup_rows
    return rows


def _commit_failure(spec: HandlerSpec, run: HandlerRun, error: Exception, duration: float,
                    retried: int = 0, notes: str = "") -> list[MessageLog]:
    trace = storable("".join(traceback.format_exception(error)))
    tried = f" after {retried + 1} attempts ({retried} retries)" if retried else ""
    comment = f"{notes[-4_000:]}\nfailed{tried}:\n{trace[-15_000:]}" if retried else trace[-20_000:]
    _finish_row(run, MessageStatus.ERROR, duration, comment=comment)
    results.record(run, MessageStatus.ERROR, error, trace)
    if spec.internal:
        return []
    assert run.incident_id is not None  # deliver() always knows the incident
    what = ("exceeded its time limit" if isinstance(error, SoftTimeLimitExceeded)
            else f"failed{tried}: {error!r}")
    reason = storable(f"handler {spec.name} {what} on message {run.message_id}")
    if run.message_id and ledger.fail_releases([run.message_id], reason):
        return []  # a release of an ended incident's resource: it is FAILED, to be retried
    return outbox.end_incident(StagedEnding(run.incident_id, IncidentStatus.ERROR, reason,
                                            by=spec.name), originator=run.originator)
