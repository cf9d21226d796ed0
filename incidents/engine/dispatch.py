"""Handling one message: check it, run its handler, commit the handler's effects once."""
from __future__ import annotations

import enum
import logging
import time
import traceback
import uuid
from dataclasses import dataclass
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.db import DatabaseError, InterfaceError, OperationalError, connection, transaction
from django.utils import timezone

from incidents import conf
from incidents.engine import (
    claims,
    cleanup,
    context,
    failpoints,
    incidents_db,
    lifecycle,
    locks,
    outbox,
    persist,
    results,
)
from incidents.engine.context import HandlerRun, StagedEnding
from incidents.engine.registry import HandlerSpec, handler_for
from incidents.engine.validation import HEALTH_CHECK_INCIDENT, HEALTH_CHECK_INCIDENT_ID
from incidents.exceptions import Deferred, MessageError
from incidents.models import (
    FINAL_STATUSES,
    LIVE_INCIDENT_STATUSES,
    Incident,
    IncidentStatus,
    MessageLog,
    MessageStatus,
)

logger = logging.getLogger(__name__)

DELIVERABLE = (MessageStatus.QUEUED, MessageStatus.SENT, MessageStatus.PROCESSING)
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
    """Another delivery of the same message claimed it; this run's effects are dropped."""


class _LockLost(Exception):
    """The run's @atomic lock expired or was taken (lock store restarted); its effects are
    dropped and the message is handled again."""


def deliver(queue: str, message: Any, *, redelivered: bool = False, retries: int = 0,
            retake: bool = False, waiting_since: float | None = None) -> Outcome:
    """Handle one delivery of `message` from `queue`. Raises Deferred to be retried later.

    `redelivered`: the broker gave it back (its worker died), so a claim on it is taken over;
    `retake`: our own retry after an infrastructure error, which may have left a claim too;
    `waiting_since`: when its first try started (time.time()); an @atomic handler's lock
    wait is counted from it.
    """
    redelivered = redelivered or retake
    try:
        message_id, incident_id = _ids(message)
    except MessageError as exc:
        logger.error("queue %s: rejected a message: %s", queue, exc)
        return Outcome(Result.REJECTED, exc)
    spec = handler_for(queue)
    if spec is not None and not (spec.atomic or spec.internal or redelivered):
        attempt = claims.claim_first_delivery(
            queue, message_id, incident_id, received=timezone.now(), consumer=context.consumer(),
            max_attempts=conf.get("MAX_ATTEMPTS"))
        if attempt is not None:
            run = _new_run(spec, queue, message_id, incident_id, attempt)
            try:
                return _run_and_commit(spec, run, message)
            finally:
                _release_locks(run)
    row = MessageLog.objects.select_related("incident").filter(pk=message_id).first()
    if spec is None or row is None or str(row.incident_id) != incident_id \
            or row.destination != queue:
        why = ("no handler is registered here" if spec is None
               else "it is not in the message log" if row is None
               else f"the log has it for incident {row.incident_id} on queue {row.destination}")
        logger.error("queue %s: rejected message %s of incident %s: %s",
                     queue, message_id, incident_id, why)
        return Outcome(Result.REJECTED, MessageError(why))
    if row.status in FINAL_STATUSES:
        logger.info("queue %s: message %s already %s; duplicate delivery dropped",
                    queue, message_id, row.status)
        if redelivered:  # its run committed and then died before releasing the lock
            _free_lock_of_dead_runs(spec, message_id, incident_id)
        return Outcome(Result.DUPLICATE)
    if row.status == MessageStatus.PROCESSING and not redelivered:
        logger.info("queue %s: message %s is being handled by %s; extra copy dropped",
                    queue, message_id, row.consumer)
        return Outcome(Result.DUPLICATE)
    incident = row.incident
    if (incident.status in LIVE_INCIDENT_STATUSES) == spec.internal:
        # Handlers serve live incidents; the internal cleanup serves ended ones only.
        _finish_unprocessed(row, f"incident {incident_id} is {incident.status}")
        return Outcome(Result.NOT_PROCESSED)
    if spec.internal and cleanup.must_wait(message):
        raise Deferred(f"cleanup of incident {incident_id} waits for messages in flight",
                       delay=locks.retry_delay(retries), incident_id=incident_id, queue=queue)

    if row.attempts >= conf.get("MAX_ATTEMPTS") and not retake:
        _free_lock_of_dead_runs(spec, message_id, incident_id)
        return _give_up(spec, row)
    run = _new_run(spec, queue, message_id, incident_id, row.attempts + 1)
    atomic_label = f"_atomic:{spec.name}"
    # Taking over from a run that died, we also inherit the lock it held; otherwise the
    # incident would wait for its lease to run out.
    heir_of = f"{message_id}:" if redelivered or row.status == MessageStatus.PROCESSING else ""
    if spec.atomic:
        # Wait in the worker on the first try only: a retry that waited every time would
        # hold pool slots for as long as a long @atomic run lasts.
        wait = float(conf.get("ATOMIC_WAIT_SECONDS")) if retries == 0 else 0.0
        waiting_since = waiting_since or time.time()
        if not locks.take_waiting(atomic_label, incident_id, run.lock_owner, wait, heir_of):
            if row.status == MessageStatus.PROCESSING:  # a dead run's claim
                _give_claim_back(str(row.pk), row.attempts)
            raise Deferred(f"{spec.name} is running for incident {incident_id}",
                           delay=locks.retry_delay(retries), incident_id=incident_id,
                           queue=queue, handler=spec.name)
        run.locks.add((atomic_label, incident_id))
    try:
        if spec.atomic:  # the incident may have ended while it waited for the lock
            status = incidents_db.status_of(incident_id)
            if status not in LIVE_INCIDENT_STATUSES:
                _finish_unprocessed(row, f"incident {incident_id} is {status}")
                return Outcome(Result.NOT_PROCESSED)
        lock_wait = time.time() - waiting_since if spec.atomic and waiting_since else None
        if not _claim(row, run.attempt, lock_wait):
            return Outcome(Result.DUPLICATE)
        if incident.status == IncidentStatus.PENDING:
            Incident.objects.filter(pk=incident_id, status=IncidentStatus.PENDING).update(
                status=IncidentStatus.ACTIVE, activated_at=timezone.now())
        return _run_and_commit(spec, run, message)
    finally:
        _release_locks(run)


def _free_lock_of_dead_runs(spec: HandlerSpec, message_id: str, incident_id: str) -> None:
    """Release the @atomic and persist locks an earlier, dead run of this message may still
    hold (it died after its commit, or it is given up)."""
    for label in ([f"_atomic:{spec.name}"] if spec.atomic else []) + [f"_persist:{spec.name}"]:
        locks.backend().release_left_by(label, incident_id, f"{message_id}:")


def _new_run(spec: HandlerSpec, queue: str, message_id: str, incident_id: str,
             attempt: int) -> HandlerRun:
    run = HandlerRun(originator=spec.name, message_id=message_id, incident_id=incident_id,
                     queue=queue, attempt=attempt)
    # Unique per delivery: two copies of one message must not share (and free) a lock.
    run.lock_owner = f"{message_id}:{uuid.uuid4().hex}"
    return run


def run_directly(spec: HandlerSpec, message: dict[str, Any]) -> None:
    """Run a handler called as a plain function: same context and commit, no log row.
    Called from inside another handler, it is part of that handler's run."""
    if context.current_run.get() is not None:
        spec.func(message)
        return
    incident_id = message.get("IncidentID") if isinstance(message, dict) else None
    run = HandlerRun(originator=spec.name, incident_id=str(incident_id) if incident_id else None)
    try:
        outcome = _run_and_commit(spec, run, message)
    finally:
        _release_locks(run)
    if outcome.error is not None:
        raise outcome.error


def _ids(message: Any) -> tuple[str, str]:
    if not isinstance(message, dict):
        raise MessageError(f"message body is a {type(message).__name__}, not a JSON object")
    message_id, incident_id = message.get("MessageID"), message.get("IncidentID")
    if not isinstance(message_id, str) or not isinstance(incident_id, str):
        raise MessageError("message has no MessageID or IncidentID string")
    if incident_id == HEALTH_CHECK_INCIDENT:
        incident_id = HEALTH_CHECK_INCIDENT_ID
    try:
        return str(uuid.UUID(message_id)), str(uuid.UUID(incident_id))
    except ValueError:
        raise MessageError(f"MessageID {message_id!r} or IncidentID {incident_id!r} "
                           "is not a UUID") from None


def _claim(row: MessageLog, attempt: int, lock_wait: float | None) -> bool:
    """Mark the row PROCESSING for this attempt; False if another delivery got there first."""
    row.received = timezone.now()
    return bool(MessageLog.objects.filter(pk=row.pk, attempts=attempt - 1,
                                          status__in=DELIVERABLE).update(
        status=MessageStatus.PROCESSING, attempts=attempt, received=row.received,
        consumer=context.consumer(), lock_wait=lock_wait))


def _run_and_commit(spec: HandlerSpec, run: HandlerRun, message: Any) -> Outcome:
    token = context.current_run.set(run)
    started = time.monotonic()
    error: Exception | None = None
    try:
        spec.func(message)
    except INFRASTRUCTURE_ERRORS:
        raise  # the database or lock store is away: not the handler's fault; retried whole
    except Deferred:  # the engine's own "not now" (a persist lock wait ran out): retried whole
        _give_claim_back(run.message_id, run.attempt)
        raise
    except Exception as exc:  # user code: any failure becomes an ERROR in the log
        error = exc
    finally:
        context.current_run.reset(token)
    duration = time.monotonic() - started
    if isinstance(error, SoftTimeLimitExceeded) and not connection.in_atomic_block:
        connection.close()  # the limit may have struck mid-query and left it unusable
    if error is not None and run.message_id is None:
        return Outcome(Result.ERROR, error)  # a direct call: nothing to record, nothing kept
    failpoints.hit("before_commit")
    try:
        try:
            with transaction.atomic():
                if error is None:
                    to_publish = _commit_success(run, duration)
                else:
                    to_publish = _commit_failure(spec, run, error, duration)
                failpoints.hit("in_commit")
        except INFRASTRUCTURE_ERRORS:
            raise  # the database is unavailable: the delivery is retried as a whole
        except DatabaseError as refused:
            if error is not None:
                raise
            # The database refused the effects (e.g. a value PostgreSQL cannot store).
            error = refused
            with transaction.atomic():
                to_publish = _commit_failure(spec, run, refused, duration)
    except _Superseded:
        logger.warning("incident %s: message %s was claimed by another delivery; "
                       "this run's effects are dropped", run.incident_id, run.message_id)
        return Outcome(Result.DUPLICATE)
    except _LockLost:
        _give_claim_back(run.message_id, run.attempt)  # the retry starts afresh under the lock
        raise Deferred(f"incident {run.incident_id}: {spec.name} lost its lock before "
                       "committing; its effects were dropped and the message is retried",
                       delay=locks.retry_delay(0), incident_id=run.incident_id,
                       handler=spec.name) from None
    _release_locks(run)  # committed: the next run may start before we publish
    outbox.publish_on_commit(to_publish, mark_later=run.message_id is not None)
    if error is not None:
        logger.error("incident %s: handler %s failed on message %s: %r", run.incident_id,
                     spec.name, run.message_id, error, exc_info=error)
        return Outcome(Result.ERROR, error)
    return Outcome(Result.COMPLETE)


def _give_claim_back(message_id: str | None, attempts: int) -> None:
    """Undo a claim before a retry: the retried copy is not marked redelivered and would
    otherwise be dropped as a copy of a message being handled."""
    if message_id is not None:
        MessageLog.objects.filter(pk=message_id, status=MessageStatus.PROCESSING,
                                  attempts=attempts).update(status=MessageStatus.SENT)


def _finish_row(run: HandlerRun, status: str, duration: float, comment: str = "") -> None:
    if run.message_id is None:
        return
    done = MessageLog.objects.filter(pk=run.message_id, status=MessageStatus.PROCESSING,
                                     attempts=run.attempt).update(
        status=status, completed=timezone.now(), duration=duration, comment=comment)
    if not done:
        raise _Superseded


def _still_exclusive(run: HandlerRun) -> None:
    """Fence the commit: a run commits only while it still holds its @atomic and persist
    locks (a lease that ran out may have let another run in)."""
    for label, incident_id in run.locks:
        if label.startswith(("_atomic:", "_persist:")) and not locks.backend().renew(
                label, incident_id, run.lock_owner, locks.lease()):
            raise _LockLost


def _commit_success(run: HandlerRun, duration: float) -> list[MessageLog]:
    _still_exclusive(run)
    _finish_row(run, MessageStatus.COMPLETE, duration)
    for effect in run.in_commit:
        effect()
    results.record(run, MessageStatus.COMPLETE)
    outbox.mark_published()
    rows = outbox.log_rows(run.outbox)
    persist.insert_staged(run)
    for ending in run.endings:
        cleanup_message = lifecycle.apply_ending(ending, originator=run.originator)
        if cleanup_message is not None:
            rows += outbox.log_rows([cleanup_message])
    outbox.insert(rows)
    return rows


def _commit_failure(spec: HandlerSpec, run: HandlerRun, error: Exception,
                    duration: float) -> list[MessageLog]:
    trace = _storable("".join(traceback.format_exception(error)))
    _finish_row(run, MessageStatus.ERROR, duration, comment=trace[-20_000:])
    results.record(run, MessageStatus.ERROR, error, trace)
    if spec.internal:
        return []
    assert run.incident_id is not None  # deliver() always knows the incident
    what = ("exceeded its time limit" if isinstance(error, SoftTimeLimitExceeded)
            else f"failed: {error!r}")
    reason = _storable(f"handler {spec.name} {what} on message {run.message_id}")
    cleanup_message = lifecycle.apply_ending(
        StagedEnding(run.incident_id, IncidentStatus.ERROR, reason, by=spec.name),
        originator=run.originator)
    rows = outbox.log_rows([cleanup_message]) if cleanup_message else []
    outbox.insert(rows)
    return rows


def give_up_after_errors(queue: str, message: Any, error: Exception) -> None:
    """The engine failed on this message again and again: log it ERROR, end the incident."""
    spec = handler_for(queue)
    row = None
    try:
        message_id, _ = _ids(message)
        row = MessageLog.objects.filter(pk=message_id).first()
    except MessageError:
        pass
    if spec is None or row is None:
        logger.error("queue %s: gave up on a message after repeated errors: %r", queue, error)
        return
    _give_up(spec, row, f"the engine failed on it repeatedly: {error!r}")


def _give_up(spec: HandlerSpec, row: MessageLog, why: str = "") -> Outcome:
    """A message whose handling keeps dying (worker killed, hard time limit) is not retried
    for ever: it is logged ERROR and the incident follows the error policy."""
    reason = _storable(f"handler {spec.name} gave up on message {row.pk}: " + (why or (
        f"{row.attempts} attempts ended without a result (worker killed or over its time "
        "limit)")))
    with transaction.atomic():
        if not MessageLog.objects.filter(pk=row.pk, attempts=row.attempts,
                                         status__in=DELIVERABLE).update(
                status=MessageStatus.ERROR, completed=timezone.now(), comment=reason):
            return Outcome(Result.DUPLICATE)
        cleanup_message = None if spec.internal else lifecycle.apply_ending(
            StagedEnding(str(row.incident_id), IncidentStatus.ERROR, reason, by=spec.name),
            originator=spec.name)
        rows = outbox.log_rows([cleanup_message]) if cleanup_message else []
        outbox.insert(rows)
        outbox.publish_on_commit(rows)
    logger.error("incident %s: %s", row.incident_id, reason)
    return Outcome(Result.ERROR, MessageError(reason))


def _storable(text: str) -> str:
    """Text from an exception, made storable: PostgreSQL refuses NUL characters."""
    return text.replace("\x00", "\\x00")


def _finish_unprocessed(row: MessageLog, reason: str) -> None:
    MessageLog.objects.filter(pk=row.pk, status__in=DELIVERABLE).update(
        status=MessageStatus.NOT_PROCESSED, completed=timezone.now(), comment=reason)
    logger.info("incident %s: message %s to %s not processed: %s",
                row.incident_id, row.id, row.destination, reason)


def _release_locks(run: HandlerRun) -> None:
    while run.locks:
        label, incident_id = run.locks.pop()
        locks.give_back(label, incident_id, run.lock_owner)
