"""Incident life: declare, activate, and end (Complete/Cancel/ERROR) with a cleanup request."""
from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from typing import Any

from django.utils import timezone

from incidents.engine import context, incidents_db
from incidents.engine.context import StagedEnding, StagedMessage
from incidents.engine.registry import CLEANUP_QUEUE
from incidents.engine.validation import check_incident_id, check_text, to_json
from incidents.exceptions import MessageError, MessageTypeError
from incidents.models import ENDED_INCIDENT_STATUSES, LIVE_INCIDENT_STATUSES, Incident, IncidentStatus

logger = logging.getLogger(__name__)


def create_incident(name: Any, kind: Any, incident_date: Any = None,
                    parameters: Any = None) -> str:
    check_text(name, where="CreateIncident()", name="name", max_length=200, empty_ok=False)
    check_text(kind, where="CreateIncident()", name="kind", max_length=100, empty_ok=False)
    if incident_date is None:
        incident_date = timezone.now()
    elif isinstance(incident_date, str):
        try:
            incident_date = dt.datetime.fromisoformat(incident_date)
        except ValueError:
            raise MessageError(f"CreateIncident(): incident_date {incident_date!r} is not an "
                               "ISO 8601 date or datetime, e.g. '2026-08-01T14:00:00+00:00'") from None
    elif isinstance(incident_date, dt.date) and not isinstance(incident_date, dt.datetime):
        incident_date = dt.datetime.combine(incident_date, dt.time())
    if not isinstance(incident_date, dt.datetime):
        raise MessageTypeError(f"CreateIncident(): incident_date {incident_date!r} must be a "
                               "datetime, a date or an ISO 8601 string")
    try:
        if timezone.is_naive(incident_date):
            incident_date = timezone.make_aware(incident_date)
        incident_date.astimezone(dt.UTC)  # stored in UTC: it must exist there
    except (OverflowError, ValueError):
        raise MessageError(f"CreateIncident(): incident_date {incident_date!r} is out of the "
                           "range of dates that can be stored; give a real date") from None
    if parameters is None:
        parameters = {}
    if not isinstance(parameters, dict):
        raise MessageTypeError(f"CreateIncident(): parameters {parameters!r} must be a dict")
    parameters = json.loads(to_json(parameters, where="CreateIncident()", name="parameters"))
    incident = Incident.objects.create(name=name, kind=kind, incident_date=incident_date,
                                       parameters=parameters)
    logger.info("incident %s declared: %s (%s)", incident.id, name, kind)
    return str(incident.id)


def set_active(incident_id: Any) -> bool:
    """PENDING -> ACTIVE; False if the incident was not PENDING."""
    incident_id = check_incident_id(incident_id, where="setIncidentActive()")
    incidents_db.require(incident_id, where="setIncidentActive()")
    return bool(Incident.objects.filter(pk=incident_id, status=IncidentStatus.PENDING)
                .update(status=IncidentStatus.ACTIVE, activated_at=timezone.now()))


def stage_ending(incident_id: Any, status: Any, reason: Any, *, where: str, by: str = "",
                 **flags: bool) -> None:
    """Stage the end of an incident; it applies when the handler commits (or right away
    outside a handler, with the cleanup message waiting for FlushMessages())."""
    incident_id = check_incident_id(incident_id, where=where)
    if status not in ENDED_INCIDENT_STATUSES:
        raise MessageError(f"{where}: status {status!r} is not an end state; use one of "
                           f"{', '.join(s.value for s in ENDED_INCIDENT_STATUSES)}")
    check_text(reason, where=where, name="reason", max_length=10_000)
    for flag, value in flags.items():
        if not isinstance(value, bool):
            raise MessageTypeError(f"{where}: {flag}={value!r} must be True or False")
    run = context.current_run.get()
    ending = StagedEnding(incident_id, IncidentStatus(status), reason,
                          by=by or (run.originator if run else ""), **flags)
    if run is not None:
        if incident_id != run.incident_id:
            incidents_db.require(incident_id, where=where)
        run.endings.append(ending)
        return
    incidents_db.require(incident_id, where=where)
    cleanup = apply_ending(ending, originator="")
    if cleanup is not None:
        context.outside_staging().outbox.append(cleanup)


def apply_ending(ending: StagedEnding, *, originator: str) -> StagedMessage | None:
    """Set the incident's end status; return its cleanup message. An incident that has ended
    keeps its status; with force=True it still gets a cleanup that does not wait."""
    changed = Incident.objects.filter(pk=ending.incident_id, status__in=LIVE_INCIDENT_STATUSES
                                      ).update(status=ending.status, completed_at=timezone.now(),
                                               comment=ending.reason, ended_by=ending.by[:200])
    if changed:
        logger.info("incident %s is %s%s%s", ending.incident_id, ending.status,
                    f" by {ending.by}" if ending.by else "",
                    f": {ending.reason}" if ending.reason else "")
    else:
        logger.info("incident %s already ended; %s ignored%s", ending.incident_id,
                    ending.status, ", cleaning up at once" if ending.force else "")
        if not ending.force:
            return None
    message_id = str(uuid.uuid4())
    body = {
        "IncidentID": ending.incident_id, "MessageID": message_id, "originator": originator,
        "CleanLocks": ending.clean_locks, "CleanPersist": ending.clean_persist,
        "CleanMessages": ending.clean_messages, "force": ending.force,
    }
    return StagedMessage(id=message_id, incident_id=ending.incident_id, queue=CLEANUP_QUEUE,
                         body=body, originator=originator)
