"""`manage.py diagnose_incident ID`: why is this incident not moving?"""
from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django.core.management.base import CommandError
from django.core.serializers.json import DjangoJSONEncoder
from django.utils import timezone

from incidents.engine import diagnosis, incidents_db
from incidents.exceptions import WorkflowError
from incidents.formatting import human_duration, timestamp
from incidents.models import IN_FLIGHT_STATUSES, LIVE_INCIDENT_STATUSES, Incident

from ._common import IncidentCommand


def _shown(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_shown(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_shown(v) for v in value) + "]"
    return timestamp(value) if isinstance(value, datetime) else str(value)


class Command(IncidentCommand):
    help = ("List every reason an incident may not be moving (messages waiting in a queue no "
            "worker consumes, long runs, held locks, a waiting cleanup, dead letters, nothing "
            "in flight), each with its evidence and age. Exit status 0 whether or not any is "
            "found.")

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("incident_id", help="the IncidentID, or its first 8+ characters")
        parser.add_argument("--json", action="store_true", help="print JSON, for scripts")

    def handle(self, *args: Any, **opts: Any) -> None:
        try:
            incident = Incident.objects.get(pk=incidents_db.resolve(opts["incident_id"],
                                                                    where="diagnose"))
        except WorkflowError as exc:
            raise CommandError(str(exc)) from exc
        reasons = diagnosis.diagnose(str(incident.pk))
        now = timezone.now()
        if opts["json"]:
            self.stdout.write(json.dumps({
                "incident": str(incident.pk), "status": incident.status,
                "cleaned_at": incident.cleaned_at, "diagnosed_at": now,
                "reasons": [r.as_json(now) for r in reasons]}, cls=DjangoJSONEncoder, indent=2))
            return
        self.stdout.write(f"incident {incident.pk} {incident.name!r} ({incident.status}): "
                          + (f"{len(reasons)} reason(s) it may not be moving" if reasons
                             else self._no_reason(incident)))
        for n, reason in enumerate(reasons, 1):
            since = (f" for {human_duration(reason.age(now))} (since {timestamp(reason.since)})"
                     if reason.since else "")
            self.stdout.write(f"{n}. [{reason.kind}]{since}\n   {reason.summary}")
            evidence = ", ".join(f"{k}={_shown(v)}" for k, v in reason.evidence.items()
                                 if v not in (None, "", [], {}))
            self.stdout.write(f"   evidence: {evidence}\n   see: {reason.target.describe()}")

    @staticmethod
    def _no_reason(incident: Incident) -> str:
        if incident.status not in LIVE_INCIDENT_STATUSES and incident.cleaned_at:
            return f"ended and cleaned up at {timestamp(incident.cleaned_at)}; nothing is meant to move"
        in_flight = incident.messages.filter(status__in=IN_FLIGHT_STATUSES).count()
        return f"no reason found; {in_flight} message(s) in flight are being handled as usual"
