"""What operators do to a live incident besides cancel and kill (engine/operations.py): send
it a message, and drain it (cancel, then kill what still runs after a deadline). Each is
recorded (engine/audit.py) in the transaction that does it."""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from incidents.engine import audit, draining, incidents_db, lifecycle, outbox, registry, sending
from incidents.engine.context import StagedEnding
from incidents.engine.graph import OPERATOR_PREFIX
from incidents.engine.validation import check_queue_name, check_text
from incidents.exceptions import IncidentNotLive, MessageError, QueueNameError
from incidents.models import LIVE_INCIDENT_STATUSES, Incident, IncidentStatus

logger = logging.getLogger(__name__)

#: How long a drain may wait for running handlers, in seconds.
DRAIN_SECONDS_MIN, DRAIN_SECONDS_MAX = 1, 3600


def operator_queues() -> list[str]:
    """The queues an operator may send to: those a registered handler serves."""
    return [q for q in registry.registered_queues() if not q.startswith("_")]


def inject_message(incident_id: Any, queue: Any, message: Any, *, reason: str = "",
                   by: str = "", allow_unregistered_queue: bool = False) -> str:
    """Send `message` (a JSON object) to `queue` for a live incident, as operator `by`; it is
    validated as send() validates, logged with originator "operator:<by>", and published
    after commit. Returns its MessageID.

    >>> inject_message(incident_id, "ext_data", {"values": [1, 2]}, by="alice (admin)")
    'c0b8...'
    """
    incident = incidents_db.get(incident_id, where="send_message")
    check_text(reason, where="send_message", name="reason", max_length=10_000)
    check_text(by, where="send_message", name="by", max_length=200 - len(OPERATOR_PREFIX))
    check_queue_name(queue)
    if not allow_unregistered_queue and queue not in operator_queues():
        raise QueueNameError(
            f"send_message: no registered handler serves queue {queue!r} (registered: "
            f"{', '.join(operator_queues()) or 'none'}); check the name, or allow it "
            "(--allow-unregistered-queue) if a handler in another process serves it",
            queue=queue)
    if not isinstance(message, dict):
        raise MessageError(f"send_message: the message must be a JSON object, not "
                           f"{message!r:.80}; wrap it in {{...}}", queue=queue)
    given = message.get("IncidentID", str(incident.pk))
    if str(given) != str(incident.pk):
        raise MessageError(f"send_message: the message's IncidentID {given!r} is not incident "
                           f"{incident.pk}; leave the key out (it is added)", queue=queue)
    with transaction.atomic():
        _refuse_unless_live(str(incident.pk), "send a message to")
        message_id = sending.send({**message, "IncidentID": str(incident.pk)}, queue,
                                  provided_caller=OPERATOR_PREFIX + (by or "unknown operator"))
        if message_id is None:  # it ended between the check and the send
            raise IncidentNotLive(f"send_message: incident {incident.pk} has ended; nothing "
                                  "was sent", incident_id=str(incident.pk), queue=queue)
        sending.flush()
        audit.record(str(incident.pk), "inject", by=by, reason=reason, queue=queue,
                     message_id=message_id)
    logger.info("incident %s: %s sent message %s to %s", incident.pk, by or "?", message_id, queue)
    return message_id


@dataclass
class DrainReport:
    incident_id: str
    started: bool  # False: it had ended already, nothing was done
    status: str  # the status it has now
    deadline: dt.datetime | None = None


def check_drain_seconds(seconds: Any) -> int:
    """The drain's window in whole seconds, DRAIN_SECONDS_MIN to DRAIN_SECONDS_MAX."""
    if isinstance(seconds, bool) or not isinstance(seconds, int) or not (
            DRAIN_SECONDS_MIN <= seconds <= DRAIN_SECONDS_MAX):
        raise MessageError(f"drain: kill after {seconds!r} seconds is not a whole number from "
                           f"{DRAIN_SECONDS_MIN} to {DRAIN_SECONDS_MAX}")
    return seconds


def drain_incident(incident_id: Any, *, seconds: int, reason: str = "",
                   by: str = "") -> DrainReport:
    """Cancel now; let running handlers finish for up to `seconds`; then kill what still runs
    (the incident ends KILLED), or, if nothing did, leave it CANCELLED. The cleanup message
    carries the deadline; the incident shows as DRAINING until its cleanup has run."""
    incident = incidents_db.get(incident_id, where="drain")
    seconds = check_drain_seconds(seconds)
    check_text(reason, where="drain", name="reason", max_length=10_000)
    check_text(by, where="drain", name="by", max_length=200)
    with transaction.atomic():
        deadline = timezone.now() + dt.timedelta(seconds=seconds)
        ending = StagedEnding(str(incident.pk), IncidentStatus.CANCELLED, reason, by=by)
        cleanup = lifecycle.apply_ending(ending, originator="")
        if cleanup is None:  # it had ended: a drain changes nothing
            return DrainReport(str(incident.pk), False, incidents_db.status_of(str(incident.pk))
                               or incident.status)
        cleanup.body[draining.KILL_AFTER] = deadline.astimezone(dt.UTC).isoformat()
        outbox.commit_and_publish([*ending.releases, cleanup])
        audit.record(str(incident.pk), draining.DRAIN_ACTION, by=by, reason=reason,
                     status_before=incident.status, kill_after=seconds,
                     deadline=cleanup.body[draining.KILL_AFTER])
    logger.warning("incident %s drained by %s: cancelled, running handlers killed after %d s",
                   incident.pk, by or "?", seconds)
    return DrainReport(str(incident.pk), True, IncidentStatus.CANCELLED, deadline)


def _refuse_unless_live(incident_id: str, what: str) -> None:
    # Locks the row: an ending that commits first is seen, one that comes later waits.
    status = (Incident.objects.select_for_update().filter(pk=incident_id)
              .values_list("status", flat=True).first())
    if status not in LIVE_INCIDENT_STATUSES:
        raise IncidentNotLive(f"cannot {what} incident {incident_id}: it is {status}, and "
                              "only a PENDING or ACTIVE incident handles messages",
                              incident_id=incident_id)
