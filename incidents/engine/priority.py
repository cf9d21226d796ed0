"""Incident priority: an operator's change of a live incident's priority.

Every message of an incident carries the incident's priority, set by the engine (the run's,
read with its message; otherwise read when the message is logged: outbox.log_rows), and
the broker delivers waiting messages of a higher priority first (RabbitMQ priority queues,
engine/deadletter.py; the same order on the embedded broker, engine/fsbroker.py).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from incidents.engine import audit, incidents_db, outbox
from incidents.engine.levels import parse_level
from incidents.engine.validation import check_text
from incidents.exceptions import MessageError
from incidents.models import (
    LIVE_INCIDENT_STATUSES,
    WAITING_STATUSES,
    Incident,
    IncidentPriority,
    MessageLog,
)

__all__ = ["PriorityReport", "parse_level", "set_priority"]

logger = logging.getLogger(__name__)


@dataclass
class PriorityReport:
    incident_id: str
    before: int
    after: int
    republished: int  # waiting messages published again at the new priority


def set_priority(incident_id: Any, level: Any, *, reason: str = "", by: str = "") -> PriorityReport:
    """Change a live incident's priority (an ended incident: MessageError saying so); its
    messages waiting in queues are overtaken too: their rows get the new priority and they
    are published again at it after the commit (the old copies are dropped as duplicates
    when delivered, since the engine drops a delivery whose row is already final, and a
    second concurrent copy is fenced by the commit); its pending timers just get the new
    priority. Recorded with audit.record(); a change to the level it has already changes
    and records nothing.

        set_priority("3f2a9c1e-...", "urgent", reason="evacuation ordered", by="alice")
    """
    after = parse_level(level, where="set_priority")
    check_text(reason, where="set_priority", name="reason", max_length=10_000)
    check_text(by, where="set_priority", name="by", max_length=200)
    incident = incidents_db.get(incident_id, where="set_priority")
    incident_id = str(incident.pk)
    with transaction.atomic():
        # Locked: two changes at once apply one after the other, each republishing once.
        status, before = (Incident.objects.select_for_update().filter(pk=incident_id)
                          .values_list("status", "priority").get())
        if status not in LIVE_INCIDENT_STATUSES:
            raise MessageError(f"set_priority: incident {incident_id} has ended ({status}); "
                               "only a live (PENDING or ACTIVE) incident's priority can change",
                               incident_id=incident_id)
        if before == after:
            return PriorityReport(incident_id, before, after, republished=0)
        Incident.objects.filter(pk=incident_id).update(priority=after)
        waiting = MessageLog.objects.filter(incident_id=incident_id, status__in=WAITING_STATUSES)
        waiting.update(priority=after)  # timers too: they are published when due, at it
        # What waits in a queue now: not a timer not yet due, nor a failed run's message
        # waiting for its retry (`submitted` is its retry time; a copy now would skip the wait).
        now = timezone.now()
        to_republish = list(waiting.filter(submitted__lte=now)
                            .filter(Q(not_before__isnull=True) | Q(not_before__lte=now))
                            .order_by("submitted", "pk"))
        audit.record(incident_id, "set_priority", by=by, reason=reason, before=before,
                     after=after, republished=len(to_republish))
        outbox.publish_on_commit(to_republish)
    logger.warning("incident %s: priority %s -> %s by %s; %d waiting message(s) republished",
                   incident_id, IncidentPriority(before).label, IncidentPriority(after).label,
                   by or "?", len(to_republish))
    return PriorityReport(incident_id, before, after, republished=len(to_republish))
