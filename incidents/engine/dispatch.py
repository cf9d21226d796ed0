"""Handling one delivery of a message: a chain of checks, then a run of its handler.

The common case, a first delivery to a plain handler of a live incident, costs one read
before the handler and one write transaction after it: the commit's fenced finish is the
claim (engine/ledger.py). Redeliveries, retries, @atomic handlers and the engine's cleanup
claim the message before their handler runs, as a claim is what lets them take over from a
dead run, count attempts and wait for locks.
"""
from __future__ import annotations

import functools
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from incidents import conf
from incidents.engine import (
    cleanup,
    context,
    contracts,
    draining,
    incidents_db,
    ledger,
    locks,
    outbox,
    releases,
    runs,
)
from incidents.engine.context import HandlerRun, StagedEnding
from incidents.engine.registry import HandlerSpec, handler_for, spec_of
from incidents.engine.runs import Outcome, Result
from incidents.engine.validation import HEALTH_CHECK_INCIDENT, HEALTH_CHECK_INCIDENT_ID
from incidents.exceptions import Deferred, HandlerRegistrationError, MessageError
from incidents.models import (
    FINAL_STATUSES,
    LIVE_INCIDENT_STATUSES,
    IncidentStatus,
    MessageStatus,
)

logger = logging.getLogger(__name__)


@dataclass
class Delivery:
    """One delivery of a logged message, as the checks see it."""

    queue: str
    message: dict[str, Any]
    message_id: str
    incident_id: str
    spec: HandlerSpec
    entry: ledger.Entry
    redelivered: bool  # the broker gave it back (its worker died), or our own retake
    retake: bool  # our retry after an infrastructure error, which may have left a claim
    retries: int
    waiting_since: float | None
    retried: int = 0  # the handler's own retries before this delivery (engine/retrying.py)
    notes: str = ""  # their comment lines, kept on the log row
    release: bool = False  # a resource's release, run on its ended incident (engine/releases.py)


def deliver(queue: str, message: Any, *, redelivered: bool = False, retries: int = 0,
            retake: bool = False, waiting_since: float | None = None, retried: int = 0,
            notes: str = "") -> Outcome:
    """Handle one delivery of `message` from `queue`. Raises Deferred to be retried later.

    `redelivered`: the broker gave it back (its worker died), so a claim on it is taken over;
    `retake`: our own retry after an infrastructure error, which may have left a claim too;
    `waiting_since`: when its first try started (time.time()); an @atomic handler's lock
    wait is counted from it; `retried`, `notes`: the handler's retries so far (a failed
    run it retries raises runs.RetryScheduled, a Deferred).
    """
    try:
        message_id, incident_id = _ids(message)
    except MessageError as exc:
        logger.error("queue %s: rejected a message: %s", queue, exc)
        return Outcome(Result.REJECTED, exc)
    spec, entry = handler_for(queue), ledger.lookup(message_id)
    refusal = _not_ours(queue, spec, entry, incident_id)
    if refusal is not None:
        logger.error("queue %s: rejected message %s of incident %s: %s",
                     queue, message_id, incident_id, refusal)
        return Outcome(Result.REJECTED, MessageError(refusal))
    assert spec is not None and entry is not None
    delivery = Delivery(queue, message, message_id, incident_id, spec, entry,
                        redelivered or retake, retake, retries, waiting_since, retried, notes)
    for check in (_handled_already, _being_handled, _incident_not_served, _breaks_contract,
                  _cleanup_waits, _out_of_attempts):
        outcome = check(delivery)
        if outcome is not None:
            return outcome
    if spec.atomic or spec.internal or delivery.redelivered:
        return _run_claimed(delivery)
    return _run_unclaimed(delivery)


def _not_ours(queue: str, spec: HandlerSpec | None, entry: ledger.Entry | None,
              incident_id: str) -> str | None:
    if spec is None:
        return "no handler is registered here"
    if entry is None:
        return "it is not in the message log"
    if entry.incident_id != incident_id or entry.destination != queue:
        return f"the log has it for incident {entry.incident_id} on queue {entry.destination}"
    return None


def _handled_already(d: Delivery) -> Outcome | None:
    if d.entry.status not in FINAL_STATUSES:
        return None
    logger.info("queue %s: message %s already %s; duplicate delivery dropped",
                d.queue, d.message_id, d.entry.status)
    if d.redelivered:  # its run committed and then died before releasing the lock
        _free_lock_of_dead_runs(d)
    return Outcome(Result.DUPLICATE)


def _being_handled(d: Delivery) -> Outcome | None:
    if d.entry.status != MessageStatus.PROCESSING or d.redelivered:
        return None
    logger.info("queue %s: message %s is being handled by another run; extra copy dropped",
                d.queue, d.message_id)
    return Outcome(Result.DUPLICATE)


def _incident_not_served(d: Delivery) -> Outcome | None:
    """Handlers serve live incidents, and releases of ended ones' resources; the internal
    cleanup serves ended ones only."""
    if (d.entry.incident_status in LIVE_INCIDENT_STATUSES) != d.spec.internal:
        return None
    if not d.spec.internal and releases.is_release(d.message_id):
        d.release = True
        return None
    _finish_unprocessed(d, f"incident {d.incident_id} is {d.entry.incident_status}")
    return Outcome(Result.NOT_PROCESSED)


def _breaks_contract(d: Delivery) -> Outcome | None:
    """A message its queue's schema refuses (sent by an older version, or by a process that
    does not know the schema) fails as its handler would have."""
    fault = contracts.violation(d.queue, d.message)
    if fault is None:
        return None
    return _fail(d.spec, d.message_id, d.incident_id, d.entry.attempts, runs.storable(fault))


def _cleanup_waits(d: Delivery) -> Outcome | None:
    if not (d.spec.internal and cleanup.must_wait(d.message)):
        return None
    if draining.ran_out(d.message):  # a drain's deadline passed: kill what still runs
        draining.kill_the_rest(d.message)
        return None
    waited = time.time() - (d.waiting_since or time.time())
    if waited < conf.get("CLEANUP_WAIT_SECONDS") or not cleanup.stop_waiting(d.message, waited):
        raise Deferred(f"cleanup of incident {d.incident_id} waits for messages in flight",
                       delay=draining.retry_delay(d.message, locks.retry_delay(d.retries)),
                       incident_id=d.incident_id, queue=d.queue)
    return None


def _out_of_attempts(d: Delivery) -> Outcome | None:
    # WORKFLOW_MAX_ATTEMPTS counts runs that died; the handler's own retries ran to the end.
    if d.entry.attempts - d.retried < conf.get("MAX_ATTEMPTS") or d.retake:
        return None
    _free_lock_of_dead_runs(d)
    return _give_up(d.spec, d.message_id, d.incident_id, d.entry.attempts)


def _run_unclaimed(d: Delivery) -> Outcome:
    run = _new_run(d, claimed=False)
    run.activate = d.entry.incident_status == IncidentStatus.PENDING
    try:
        return runs.run_and_commit(d.spec, run, d.message, retried=d.retried, notes=d.notes)
    finally:
        runs.release_locks(run)


def _run_claimed(d: Delivery) -> Outcome:
    run = _new_run(d, claimed=True)
    waiting_since = d.waiting_since or time.time()
    try:
        if d.spec.atomic:
            _take_atomic_lock(d, run)
            status = incidents_db.status_of(d.incident_id)  # it may have ended meanwhile
            if status not in LIVE_INCIDENT_STATUSES and not d.release:
                _finish_unprocessed(d, f"incident {d.incident_id} is {status}")
                return Outcome(Result.NOT_PROCESSED)
        lock_wait = time.time() - waiting_since if d.spec.atomic else None
        run.received = timezone.now()  # the run starts now, after any wait for its lock
        if not ledger.claim(d.message_id, run.attempt, received=run.received,
                            consumer=context.consumer(), lock_wait=lock_wait):
            return Outcome(Result.DUPLICATE)
        if d.entry.incident_status == IncidentStatus.PENDING:
            ledger.activate(d.incident_id)
        return runs.run_and_commit(d.spec, run, d.message, retried=d.retried, notes=d.notes)
    finally:
        runs.release_locks(run)


def _take_atomic_lock(d: Delivery, run: HandlerRun) -> None:
    """Take the handler's lock for the incident, or raise Deferred to retry later."""
    label = f"_atomic:{d.spec.name}"
    # Wait in the worker on the first try only: a retry that waited every time would hold
    # pool slots for as long as a long @atomic run lasts.
    wait = float(conf.get("ATOMIC_WAIT_SECONDS")) if d.retries == 0 else 0.0
    # Taking over from a run that died, we also inherit the lock it held; otherwise the
    # incident would wait for its lease to run out.
    heir_of = f"{d.message_id}:" if d.redelivered else ""
    if not locks.take_waiting(label, d.incident_id, run.lock_owner, wait, heir_of):
        if d.entry.status == MessageStatus.PROCESSING:  # a dead run's claim
            ledger.give_claim_back(d.message_id, d.entry.attempts)
        raise Deferred(f"{d.spec.name} is running for incident {d.incident_id}",
                       delay=locks.retry_delay(d.retries), incident_id=d.incident_id,
                       queue=d.queue, handler=d.spec.name)
    run.locks.add((label, d.incident_id))


def _new_run(d: Delivery, *, claimed: bool) -> HandlerRun:
    run = HandlerRun(originator=d.spec.name, message_id=d.message_id,
                     incident_id=d.incident_id, queue=d.queue, attempt=d.entry.attempts + 1,
                     claimed=claimed, received=timezone.now(),
                     priority=d.entry.incident_priority)
    # Unique per delivery: two copies of one message must not share (and free) a lock.
    run.lock_owner = f"{d.message_id}:{uuid.uuid4().hex}"
    if d.release:  # its success releases the resource, in its commit
        run.in_commit.append(functools.partial(releases.released, d.message_id, d.incident_id,
                                               d.spec.name))
    return run


def _free_lock_of_dead_runs(d: Delivery) -> None:
    """Release the @atomic and persist locks an earlier, dead run of this message may still
    hold (it died after its commit, or it is given up)."""
    labels = ([f"_atomic:{d.spec.name}"] if d.spec.atomic else []) + [f"_persist:{d.spec.name}"]
    for label in labels:
        locks.backend().release_left_by(label, d.incident_id, f"{d.message_id}:")


def _finish_unprocessed(d: Delivery, reason: str) -> None:
    ledger.not_processed(d.message_id, reason)
    logger.info("incident %s: message %s to %s not processed: %s",
                d.incident_id, d.message_id, d.queue, reason)


def mark_handler(func: Callable[..., Any], *, atomic: bool = False) -> Callable[..., Any]:
    """Wrap `func` as a handler: calling the wrapper runs it in a handler context."""
    spec = spec_of(func)
    if spec is not None:
        spec.atomic = spec.atomic or atomic
        return func
    if not callable(func):
        raise HandlerRegistrationError(f"@workflow.handler: {func!r} is not a function")
    spec = HandlerSpec(func=func, name=func.__name__,
                       atomic=atomic or getattr(func, "__workflow_atomic__", False))

    @functools.wraps(func)
    def run_handler(message: dict[str, Any]) -> None:
        run_directly(spec, message)

    run_handler.__workflow_handler__ = spec  # type: ignore[attr-defined]
    return run_handler


def run_directly(spec: HandlerSpec, message: dict[str, Any]) -> None:
    """Run a handler called as a plain function: same context and commit, no log row.
    Called from inside another handler, it is part of that handler's run."""
    if context.current_run.get() is not None:
        spec.func(message)
        return
    incident_id = message.get("IncidentID") if isinstance(message, dict) else None
    run = HandlerRun(originator=spec.name, incident_id=str(incident_id) if incident_id else None)
    try:
        outcome = runs.run_and_commit(spec, run, message)
    finally:
        runs.release_locks(run)
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


def give_up_after_errors(queue: str, message: Any, error: Exception) -> None:
    """The engine failed on this message again and again: log it ERROR, end the incident."""
    spec, entry, ids = handler_for(queue), None, None
    try:
        ids = _ids(message)
        entry = ledger.lookup(ids[0])
    except MessageError:
        pass
    if spec is None or entry is None or ids is None:
        logger.error("queue %s: gave up on a message after repeated errors: %r", queue, error)
        return
    _give_up(spec, ids[0], entry.incident_id, entry.attempts,
             f"the engine failed on it repeatedly: {error!r}")


def _give_up(spec: HandlerSpec, message_id: str, incident_id: str, attempts: int,
             why: str = "") -> Outcome:
    """A message whose handling keeps dying (worker killed, hard time limit) is not retried
    for ever: it is logged ERROR and the incident follows the error policy."""
    reason = runs.storable(f"handler {spec.name} gave up on message {message_id}: " + (why or (
        f"{attempts} attempts ended without a result (worker killed or over its time "
        "limit)")))
    return _fail(spec, message_id, incident_id, attempts, reason)


def _fail(spec: HandlerSpec, message_id: str, incident_id: str, attempts: int,
          reason: str) -> Outcome:
    """Log the message ERROR with `reason`; the incident follows the error policy."""
    with transaction.atomic():
        if not ledger.give_up(message_id, attempts, reason):
            return Outcome(Result.DUPLICATE)
        if not spec.internal:
            outbox.publish_on_commit(outbox.end_incident(
                StagedEnding(incident_id, IncidentStatus.ERROR, reason, by=spec.name),
                originator=spec.name))
    logger.error("incident %s: %s", incident_id, reason)
    return Outcome(Result.ERROR, MessageError(reason))
