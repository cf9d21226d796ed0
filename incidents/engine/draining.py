"""Drain, then kill: a Cancel whose cleanup message carries a deadline (`kill_after`, UTC).

The cleanup waits, as after any Cancel, while the incident has messages in flight
(engine/dispatch.py `_cleanup_waits`). A drain's cleanup that finds them still in flight
after its deadline kills them as a Kill does (logged NOT PROCESSED, revoked after commit)
and the incident goes CANCELLED -> KILLED; one that finds nothing in flight notes that the
incident drained in time. While it waits, the incident is shown as DRAINING: CANCELLED, a
recorded "drain" action, not yet cleaned up (no status of its own, no migration).

When: the cleanup's retry before the deadline is timed to land just after it, so the kill
comes within about a second. A cleanup needs a free pool process, and the handlers to kill
may hold them all; then each worker's relay thread (its main process) kills overdue drains
on its next pass, within WORKFLOW_RELAY_INTERVAL_SECONDS (5 s) of the deadline.
"""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from incidents.engine import celery_app, ledger, releases
from incidents.engine.registry import CLEANUP_QUEUE
from incidents.models import (
    IN_FLIGHT_STATUSES,
    Incident,
    IncidentStatus,
    MessageLog,
    MessageStatus,
    OperatorAction,
)

logger = logging.getLogger(__name__)

#: The cleanup message's key holding the drain's deadline (ISO 8601, UTC).
KILL_AFTER = "kill_after"
#: The action audit.record() keeps for a drain; its details hold the deadline.
DRAIN_ACTION = "drain"
#: How the console shows a draining incident (derived, never stored).
DRAINING = "DRAINING"
#: The retry before the deadline is timed to land just after it, not up to a whole
#: WORKFLOW_RETRY_MAX_SECONDS later.
PAST_THE_DEADLINE_SECONDS = 0.05
RAN_STATUSES = (MessageStatus.COMPLETE, MessageStatus.ERROR)  # a handler ran them to the end


@dataclass(frozen=True)
class Drain:
    """A drain in progress: its deadline, and how long the operator allowed."""

    deadline: dt.datetime
    seconds: float

    def seconds_left(self, now: dt.datetime | None = None) -> float:
        return max(0.0, (self.deadline - (now or timezone.now())).total_seconds())


def parse_deadline(text: Any) -> dt.datetime | None:
    """An ISO 8601 deadline as an aware datetime; None if `text` is not one."""
    if not isinstance(text, str):
        return None
    try:
        deadline = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return deadline if timezone.is_aware(deadline) else deadline.replace(tzinfo=dt.UTC)


def deadline_of(message: dict[str, Any]) -> dt.datetime | None:
    """The deadline a cleanup message carries, if it is a drain's."""
    return parse_deadline(message.get(KILL_AFTER))


def ran_out(message: dict[str, Any]) -> bool:
    """Whether this is a drain's cleanup and its deadline has passed."""
    deadline = deadline_of(message)
    return deadline is not None and timezone.now() >= deadline


def retry_delay(message: dict[str, Any], delay: float) -> float:
    """`delay`, shortened so that a drain's cleanup tries again right after its deadline."""
    deadline = deadline_of(message)
    if deadline is None:
        return delay
    left = (deadline - timezone.now()).total_seconds()
    return min(delay, max(left, 0.0) + PAST_THE_DEADLINE_SECONDS)


def in_progress(incident: Incident) -> Drain | None:
    """The incident's drain if it is DRAINING: CANCELLED by a drain, its cleanup not yet run
    (a cleanup that ran leaves it uncleaned while a resource release is outstanding)."""
    if (incident.status != IncidentStatus.CANCELLED or incident.cleaned_at is not None
            or releases.cleanup_ran(str(incident.pk), incident.completed_at)):
        return None
    action = (OperatorAction.objects.filter(incident_id=incident.pk, action=DRAIN_ACTION)
              .order_by("-at", "-id").first())
    deadline = parse_deadline((action.details or {}).get("deadline")) if action else None
    if action is None or deadline is None:
        return None
    return Drain(deadline, float(action.details.get("kill_after") or 0))


def still_running(incident_id: str) -> int:
    """How many of the incident's messages, its cleanup aside, are still in flight."""
    return (MessageLog.objects.filter(incident_id=incident_id, status__in=IN_FLIGHT_STATUSES)
            .exclude(destination=CLEANUP_QUEUE).count())


def kill_the_rest(message: dict[str, Any]) -> int:
    """The drain ran out: stop the incident's messages still in flight (all but this cleanup
    message), CANCELLED -> KILLED, and revoke them after commit; how many were stopped."""
    incident_id, cleanup_id = message["IncidentID"], message["MessageID"]
    with transaction.atomic():
        incident = Incident.objects.get(pk=incident_id)
        allowed = _allowed_seconds(incident, deadline_of(message))
        in_flight = MessageLog.objects.filter(incident_id=incident_id,
                                              status__in=IN_FLIGHT_STATUSES).exclude(pk=cleanup_id)
        running = in_flight.filter(status=MessageStatus.PROCESSING).count()
        stopped = ledger.stop_in_flight(
            incident_id, f"incident drained for {allowed:.0f} s, then killed", besides=cleanup_id)
        if not stopped:
            return 0
        note = f"drained for {allowed:.0f} s; killed {running} running handler(s)"
        if len(stopped) > running:
            note += f"; {len(stopped) - running} waiting message(s) not processed"
        ledger.kill_cancelled(incident_id, _joined(incident.comment, note))
        transaction.on_commit(lambda: revoke(stopped))
    logger.warning("incident %s: %s", incident_id, note)
    return len(stopped)


def kill_overdue() -> int:
    """Kill what still runs in drains whose deadline has passed while their cleanup waits in
    the broker, as it does while every process of every worker is busy with the very handlers
    to kill. Run by each worker's relay thread (its main process, never a pool slot); a
    drain the cleanup itself got to first finds nothing left to stop. How many were stopped."""
    overdue = (Incident.objects.filter(status=IncidentStatus.CANCELLED, cleaned_at__isnull=True,
                                       actions__action=DRAIN_ACTION)
               .values_list("pk", flat=True).distinct())
    stopped = 0
    for incident_id in overdue:
        for body in (MessageLog.objects.filter(incident_id=incident_id, destination=CLEANUP_QUEUE,
                                               status__in=IN_FLIGHT_STATUSES)
                     .values_list("body", flat=True)):
            if isinstance(body, dict) and ran_out(body):
                stopped += kill_the_rest(body)
    return stopped


def note_drained(message: dict[str, Any]) -> None:
    """In the cleanup's commit: a drain whose incident is still CANCELLED had nothing left to
    kill; say so in its comment, with when its last handler finished."""
    deadline = deadline_of(message)
    if deadline is None:
        return
    incident = Incident.objects.filter(pk=message["IncidentID"], status=IncidentStatus.CANCELLED,
                                       cleaned_at__isnull=True).first()
    if incident is None or incident.completed_at is None:
        return
    last = (MessageLog.objects.filter(incident_id=incident.pk, status__in=RAN_STATUSES)
            .exclude(pk=message["MessageID"]).aggregate(last=Max("completed"))["last"])
    took = max(0.0, ((last or incident.completed_at) - incident.completed_at).total_seconds())
    allowed = _allowed_seconds(incident, deadline)
    note = (f"drained in time: the last handler finished {took:.1f} s after the cancel, "
            f"within the {allowed:.0f} s allowed") if took <= allowed else (
        f"drained: the last handler finished {took:.1f} s after the cancel, past the "
        f"{allowed:.0f} s allowed, before anything could kill it")
    Incident.objects.filter(pk=incident.pk, status=IncidentStatus.CANCELLED).update(
        comment=_joined(incident.comment, note))
    logger.info("incident %s: %s", incident.pk, note)


def revoke(message_ids: list[str]) -> None:
    """Ask every worker to drop these messages and terminate handlers running them (a Kill,
    a drain past its deadline)."""
    try:
        celery_app.get().control.revoke(message_ids, terminate=True, signal="SIGTERM")
    except Exception:  # the log already says NOT PROCESSED; revoking only saves work
        logger.warning("could not broadcast revoke of %d message(s)", len(message_ids),
                       exc_info=True)


def _allowed_seconds(incident: Incident, deadline: dt.datetime | None) -> float:
    if deadline is None or incident.completed_at is None:
        return 0.0
    return max(0.0, (deadline - incident.completed_at).total_seconds())


def _joined(comment: str, note: str) -> str:
    return f"{comment}; {note}" if comment else note
