"""What operators do to incidents (admin, management commands): start, cancel, kill; each
recorded (engine/audit.py)."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.db import transaction

from incidents.engine import audit, draining, incidents_db, ledger, lifecycle, outbox, registry, sending
from incidents.engine.context import StagedEnding
from incidents.engine.validation import check_text
from incidents.exceptions import MessageError
from incidents.models import (
    LIVE_INCIDENT_STATUSES,
    IncidentStatus,
)

logger = logging.getLogger(__name__)


def start_incident(*, kind: str, name: str, incident_date: Any = None,
                   parameters: dict[str, Any] | None = None, queue: str | None = None,
                   message: dict[str, Any] | None = None, **details: Any) -> str:
    """Declare an incident and send its first message: to `queue` (with `message`), or to
    the entry queue its kind registered (with the parameters). Nothing is stored if the
    first message is refused. `details`: owner, upper_left, lower_right, duration, priority
    (a level name or number; default normal)."""
    kind = _registered_spelling(kind)
    if queue is None:
        spec = registry.kind(kind)
        if spec is None:
            known = ", ".join(k.kind for k in registry.known_kinds()) or "none registered"
            raise MessageError(f"kind {kind!r} has no entry queue (known kinds: {known}); "
                               "give a queue and a message, or register the kind with "
                               "workflow.RegisterKind() in its workflow module")
        queue = spec.entry_queue
    if message is not None and not isinstance(message, dict):
        raise MessageError(f"the first message must be a JSON object, not {message!r:.80}")
    with transaction.atomic():
        incident_id = lifecycle.create_incident(name, kind, incident_date, parameters, **details)
        first: dict[str, Any] = {"parameters": parameters or {}} if message is None else dict(message)
        first["IncidentID"] = incident_id
        sending.send(first, queue)
        sending.flush()
    return incident_id


def _registered_spelling(kind: str) -> str:
    """`kind` as registered when exactly one registered kind matches it ignoring case
    (operators type `quicksort` for QUICKSORT); otherwise `kind` unchanged."""
    if not isinstance(kind, str) or registry.kind(kind) is not None:
        return kind
    same = [k.kind for k in registry.known_kinds() if k.kind.casefold() == kind.casefold()]
    return same[0] if len(same) == 1 else kind


def cancel_incident(incident_id: Any, *, reason: str = "", by: str = "") -> bool:
    """Cancel: CANCELLED with a reason; queued messages are not handled; cleanup runs once
    nothing is in flight. False if the incident had already ended."""
    incident = incidents_db.get(incident_id, where="cancel")
    with transaction.atomic():
        lifecycle.stage_ending(str(incident.pk), IncidentStatus.CANCELLED, reason,
                               where="cancel", by=by)
        sending.flush()
        audit.record(str(incident.pk), "cancel", by=by, reason=reason,
                     status_before=incident.status)
    return incident.status in LIVE_INCIDENT_STATUSES


@dataclass
class KillReport:
    incident_id: str
    killed: bool  # False: it had ended already (it was still cleaned up at once)
    stopped_messages: int
    status: str = IncidentStatus.KILLED  # if not killed: the status it had ended with


def kill_incident(incident_id: Any, *, reason: str = "", by: str = "") -> KillReport:
    """Kill: KILLED; its messages in flight are logged NOT PROCESSED and revoked (a handler
    running one is terminated), and cleanup runs at once."""
    incident = incidents_db.get(incident_id, where="kill")
    check_text(reason, where="kill", name="reason", max_length=10_000)
    check_text(by, where="kill", name="by", max_length=200)
    ending = StagedEnding(str(incident.pk), IncidentStatus.KILLED, reason, force=True, by=by)
    with transaction.atomic():
        in_flight = ledger.stop_in_flight(str(incident.pk),
                                          f"incident killed{f' by {by}' if by else ''}")
        outbox.publish_on_commit(outbox.end_incident(ending, originator=""))
        if in_flight:
            transaction.on_commit(lambda: draining.revoke(in_flight))
        audit.record(str(incident.pk), "kill", by=by, reason=reason,
                     status_before=incident.status, stopped_messages=len(in_flight))
    killed = incident.status in LIVE_INCIDENT_STATUSES
    if killed:
        logger.warning("incident %s killed by %s: %d message(s) stopped", incident.pk,
                       by or "?", len(in_flight))
    else:  # not a kill: it keeps the status it ended with
        logger.info("incident %s had already ended (%s); cleanup forced by %s: %d message(s) "
                    "stopped", incident.pk, incident.status, by or "?", len(in_flight))
    return KillReport(str(incident.pk), killed, len(in_flight),
                      IncidentStatus.KILLED if killed else incident.status)
