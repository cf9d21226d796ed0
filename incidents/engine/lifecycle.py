"""Incident life: declare, activate, and end (Complete/Cancel/ERROR) with a cleanup request."""
from __future__ import annotations

import datetime as dt
import json
import logging
import math
import uuid
from typing import Any

from django.utils import timezone

from incidents.engine import context, incidents_db, ledger, releases
from incidents.engine.context import StagedEnding, StagedMessage
from incidents.engine.levels import parse_level
from incidents.engine.registry import CLEANUP_QUEUE
from incidents.engine.validation import (
    HEALTH_CHECK_INCIDENT,
    HEALTH_CHECK_INCIDENT_ID,
    check_area,
    check_incident_id,
    check_text,
    to_json,
)
from incidents.exceptions import MessageError, MessageTypeError
from incidents.models import (
    ENDED_INCIDENT_STATUSES,
    LIVE_INCIDENT_STATUSES,
    Incident,
    IncidentPriority,
    IncidentStatus,
)

logger = logging.getLogger(__name__)


def create_incident(name: Any, kind: Any, incident_date: Any = None, parameters: Any = None, *,
                    owner: Any = None, upper_left: Any = "", lower_right: Any = "",
                    duration: Any = None, priority: Any = None) -> str:
    check_text(name, where="CreateIncident()", name="name", max_length=200, empty_ok=False)
    check_text(kind, where="CreateIncident()", name="kind", max_length=100, empty_ok=False)
    owner = _owner_name(owner)
    upper_left, lower_right = check_area(upper_left, lower_right, where="CreateIncident()")
    duration = _duration(duration)
    priority = (IncidentPriority.NORMAL if priority is None
                else parse_level(priority, where="CreateIncident()"))
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
                                       parameters=parameters, owner=owner,
                                       upper_left_latlong=upper_left,
                                       lower_right_latlong=lower_right, duration=duration,
                                       priority=priority)
    logger.info("incident %s declared: %s (%s)", incident.id, name, kind)
    return str(incident.id)


def _owner_name(user_id: Any) -> str:
    """The owner as text: a user name or id, or a user object (the original passed one)."""
    if user_id is None:
        return ""
    if hasattr(user_id, "get_username"):  # a Django user
        user_id = user_id.get_username()
    elif hasattr(user_id, "username"):  # another framework's user record
        user_id = user_id.username
    if isinstance(user_id, int) and not isinstance(user_id, bool):
        user_id = str(user_id)
    return check_text(user_id, where="CreateIncident()", name="user_id", max_length=150)


def _duration(duration: Any) -> float | None:
    if duration is None or duration == "":
        return None
    try:
        if isinstance(duration, bool):
            raise TypeError
        value = float(duration)
    except (TypeError, ValueError, OverflowError):
        value = float("nan")
    if not math.isfinite(value) or value < 0:
        raise MessageError(f"CreateIncident(): duration {duration!r:.40} must be a number >= 0 "
                           "(the original's unit, e.g. hours), or None")
    return value


def open_health_check_incident() -> None:
    """Make the health check's fixed incident live: create it, or reopen it if a probe
    before ended it (Complete, Cancel), so every probe is handled."""
    incident, created = Incident.objects.get_or_create(
        pk=HEALTH_CHECK_INCIDENT_ID,
        defaults={"name": HEALTH_CHECK_INCIDENT, "kind": "HEALTH_CHECK",
                  "incident_date": timezone.now(), "status": IncidentStatus.ACTIVE,
                  "activated_at": timezone.now()})
    if not created and incident.status not in LIVE_INCIDENT_STATUSES:
        ledger.reopen(HEALTH_CHECK_INCIDENT_ID, incident.status)
        logger.info("incident %s (%s) reopened for a new probe", HEALTH_CHECK_INCIDENT_ID,
                    HEALTH_CHECK_INCIDENT)


def set_active(incident_id: Any) -> bool:
    """PENDING -> ACTIVE; False if the incident was not PENDING."""
    incident_id = check_incident_id(incident_id, where="setIncidentActive()")
    incidents_db.require(incident_id, where="setIncidentActive()")
    return ledger.activate(incident_id)


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
        context.outside_staging().outbox.extend([*ending.releases, cleanup])


def apply_ending(ending: StagedEnding, *, originator: str) -> StagedMessage | None:
    """Set the incident's end status; return its cleanup message. An incident that has ended
    keeps its status; with force=True it still gets a cleanup that does not wait. The
    resources it still holds are released: their release messages, in `ending.releases`,
    are to be logged with the cleanup message."""
    if ledger.end(ending.incident_id, ending.status, ending.reason, ending.by):
        logger.info("incident %s is %s%s%s", ending.incident_id, ending.status,
                    f" by {ending.by}" if ending.by else "",
                    f": {ending.reason}" if ending.reason else "")
    else:
        if (not ending.force and ending.status != IncidentStatus.ERROR
                and incidents_db.status_of(ending.incident_id) == IncidentStatus.ERROR):
            # A Cancel (or Complete) of a failed incident: what it kept for a resume goes.
            ending.force = True
        logger.info("incident %s already ended; %s ignored%s", ending.incident_id,
                    ending.status, ", cleaning up at once" if ending.force else "")
        if not ending.force:
            return None
    ending.releases = releases.release_held(ending.incident_id, originator)
    message_id = str(uuid.uuid4())
    body = {
        "IncidentID": ending.incident_id, "MessageID": message_id, "originator": originator,
        "CleanLocks": ending.clean_locks, "CleanPersist": ending.clean_persist,
        "CleanMessages": ending.clean_messages, "force": ending.force,
    }
    return StagedMessage(id=message_id, incident_id=ending.incident_id, queue=CLEANUP_QUEUE,
                         body=body, originator=originator)
