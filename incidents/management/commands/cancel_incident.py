"""`manage.py cancel_incident ID`: cancel one incident."""
from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError

from incidents.engine import incidents_db, operations
from incidents.exceptions import WorkflowError

from ._common import IncidentCommand, operator


class Command(IncidentCommand):
    help = ("Cancel an incident: CANCELLED with a reason; messages already queued are not "
            "handled; cleanup runs once nothing is in flight. An incident that has already "
            "ended is left as it is (exit status 0).")

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("incident_id", help="the IncidentID, or its first 8+ characters")
        parser.add_argument("--reason", default="", help="why (kept with the incident)")

    def handle(self, *args: Any, **opts: Any) -> None:
        try:
            incident_id = incidents_db.resolve(opts["incident_id"], where="cancel")
            cancelled = operations.cancel_incident(incident_id, reason=opts["reason"],
                                                   by=operator())
        except WorkflowError as exc:
            raise CommandError(str(exc)) from exc
        if cancelled:
            self.stdout.write(f"cancelled {incident_id}")
        else:  # nothing to do is not an error
            self.stdout.write(f"{incident_id} had already ended "
                              f"({incidents_db.status_of(incident_id)}); not cancelled")
