"""`manage.py set_priority ID LEVEL`: raise or lower a live incident's priority."""
from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError

from incidents.engine import incidents_db, priority
from incidents.exceptions import WorkflowError
from incidents.models import IncidentPriority

from ._common import IncidentCommand, operator

LEVELS = ", ".join(level.label for level in IncidentPriority)


class Command(IncidentCommand):
    help = ("Change a live incident's priority (low, normal, high, urgent): its messages are "
            "delivered before waiting ones of incidents of lower priority, and those of its "
            "messages already waiting are published again at the new priority. Recorded with "
            "who and why. Refused for an incident that has ended.")

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("incident_id", help="the IncidentID, or its first 8+ characters")
        parser.add_argument("level", help=f"the new priority: {LEVELS} (or 0-3)")
        parser.add_argument("--reason", default="", help="why (kept in its record)")
        parser.add_argument("--by", default="",
                            help="who asked for it (default: you, on the command line)")

    def handle(self, *args: Any, **opts: Any) -> None:
        try:
            # The level first: a typo is reported without looking the incident up.
            priority.parse_level(opts["level"], where="set_priority")
            incident_id = incidents_db.resolve(opts["incident_id"], where="set_priority")
            report = priority.set_priority(incident_id, opts["level"], reason=opts["reason"],
                                           by=opts["by"] or operator())
        except WorkflowError as exc:
            raise CommandError(str(exc)) from exc
        before, after = (IncidentPriority(n).label for n in (report.before, report.after))
        if report.before == report.after:
            self.stdout.write(f"incident {incident_id[:8]}: {after} already; its priority is unchanged")
            return
        self.stdout.write(f"incident {incident_id[:8]}: {before} -> {after}; "
                          f"{report.republished} waiting message(s) published again at {after}")
