"""`manage.py resume_incident ID`: resume a failed incident after its handler was fixed."""
from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError

from incidents.engine import incidents_db, resume
from incidents.exceptions import WorkflowError

from ._common import IncidentCommand, operator


class Command(IncidentCommand):
    help = ("Resume an incident that ended ERROR, once its handler is fixed and the workers "
            "restarted: it is ACTIVE again, its failed messages are delivered again (a new "
            "attempt each) and the messages refused while it had failed are queued again. "
            "Refused, with the reason, for an incident that cannot be resumed.")

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("incident_id", help="the IncidentID, or its first 8+ characters")
        parser.add_argument("--reason", default="", help="why (kept in its record)")

    def handle(self, *args: Any, **opts: Any) -> None:
        try:
            incident_id = incidents_db.resolve(opts["incident_id"], where="resume")
            report = resume.resume_incident(incident_id, reason=opts["reason"], by=operator())
        except WorkflowError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"resumed {incident_id}: {len(report.failed)} failed message(s) "
                          f"delivered again, {report.refused} refused message(s) queued again")
