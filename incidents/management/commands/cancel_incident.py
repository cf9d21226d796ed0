"""`manage.py cancel_incident ID`: cancel one incident."""
from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from incidents.engine import operations
from incidents.exceptions import WorkflowError

from ._common import operator


class Command(BaseCommand):
    help = ("Cancel an incident: CANCELLED with a reason; messages already queued are not "
            "handled; cleanup runs once nothing is in flight.")

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("incident_id", help="the IncidentID")
        parser.add_argument("--reason", default="", help="why (kept with the incident)")

    def handle(self, *args: Any, **opts: Any) -> None:
        try:
            cancelled = operations.cancel_incident(opts["incident_id"], reason=opts["reason"],
                                                   by=operator())
        except WorkflowError as exc:
            raise CommandError(str(exc)) from exc
        if not cancelled:
            raise CommandError(f"incident {opts['incident_id']} had already ended; not cancelled")
        self.stdout.write(f"cancelled {opts['incident_id']}")
