"""`manage.py kill_incidents`: kill every active incident (the seed's killIncidents.py)."""
from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from incidents.engine import incidents_db, operations
from incidents.exceptions import WorkflowError
from incidents.models import LIVE_INCIDENT_STATUSES, Incident

from ._common import operator


class Command(BaseCommand):
    help = ("Kill incidents: KILLED, their queued messages revoked, running handlers stopped, "
            "cleanup at once. Without ids: every PENDING or ACTIVE incident.")

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("incident_ids", nargs="*", help="kill only these incidents")
        parser.add_argument("--kind", help="only live incidents of this kind")
        parser.add_argument("--reason", default="", help="why (kept with each incident)")
        parser.add_argument("--dry-run", action="store_true", help="list, kill nothing")

    def handle(self, *args: Any, **opts: Any) -> None:
        if opts["incident_ids"] and opts["kind"]:
            raise CommandError("give incident ids or --kind, not both")
        try:
            # Every id is checked before anything is killed.
            chosen = [incidents_db.get(i, where="kill").pk for i in opts["incident_ids"]]
            if opts["dry_run"]:
                targets = Incident.objects.filter(status__in=LIVE_INCIDENT_STATUSES)
                if opts["kind"]:
                    targets = targets.filter(kind=opts["kind"])
                if chosen:
                    targets = targets.filter(pk__in=chosen)
                for incident in targets:
                    self.stdout.write(f"would kill {incident.pk} {incident.name} ({incident.status})")
                self.stdout.write(f"{targets.count()} incident(s) would be killed")
                return
            if chosen:
                reports = [operations.kill_incident(i, reason=opts["reason"], by=operator())
                           for i in chosen]
            else:
                reports = operations.kill_live_incidents(kind=opts["kind"], reason=opts["reason"],
                                                         by=operator())
        except WorkflowError as exc:
            raise CommandError(str(exc)) from exc
        for report in reports:
            what = "killed" if report.killed else "already ended; cleaned up"
            self.stdout.write(f"{report.incident_id} {what} "
                              f"({report.stopped_messages} message(s) stopped)")
        self.stdout.write(f"{sum(r.killed for r in reports)} incident(s) killed")
