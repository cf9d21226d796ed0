"""`manage.py kill_incidents`: kill incidents, or every live one (the seed's killIncidents.py)."""
from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError

from incidents.engine import incidents_db, operations
from incidents.exceptions import WorkflowError
from incidents.models import LIVE_INCIDENT_STATUSES, Incident

from ._common import IncidentCommand, confirm, operator

SHOWN_BEFORE_ASKING = 10


class Command(IncidentCommand):
    help = ("Kill incidents: KILLED, their queued messages revoked, running handlers stopped, "
            "cleanup at once. Give ids, or --all for every PENDING or ACTIVE incident. Asks "
            "first unless --noinput. An incident that has already ended stays as it ended.")

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("incident_ids", nargs="*",
                            help="the incidents: ids, or their first 8+ characters")
        parser.add_argument("--all", action="store_true", help="every live incident")
        parser.add_argument("--kind", help="with --all: only live incidents of this kind")
        parser.add_argument("--reason", default="", help="why (kept with each incident)")
        parser.add_argument("--dry-run", action="store_true", help="list, kill nothing")
        parser.add_argument("--noinput", "--no-input", action="store_false", dest="interactive",
                            help="do not ask for confirmation (for scripts)")

    def handle(self, *args: Any, **opts: Any) -> None:
        if opts["incident_ids"] and (opts["all"] or opts["kind"]):
            raise CommandError("give incident ids or --all [--kind K], not both")
        if not opts["incident_ids"] and not opts["all"]:
            raise CommandError("give the ids of the incidents to kill (see `manage.py "
                               "list_incidents`), or --all to kill every live incident")
        try:
            # Every id is checked before anything is killed.
            chosen = [incidents_db.resolve(i, where="kill") for i in opts["incident_ids"]]
        except WorkflowError as exc:
            raise CommandError(str(exc)) from exc
        if chosen:
            targets = Incident.objects.filter(pk__in=chosen)
        else:
            targets = Incident.objects.filter(status__in=LIVE_INCIDENT_STATUSES)
            if opts["kind"]:
                targets = targets.filter(kind=opts["kind"])
        incidents = list(targets.order_by("created_at"))
        live = [i for i in incidents if i.status in LIVE_INCIDENT_STATUSES]
        if opts["dry_run"]:
            for incident in live:
                self.stdout.write(f"would kill {incident.pk} {incident.name} ({incident.status})")
            self.stdout.write(f"{len(live)} incident(s) would be killed")
            return
        if live and opts["interactive"]:
            self._show(live)
            if not confirm(f"Kill {len(live)} incident(s)? There is no undo "
                           "(--noinput skips this question)."):
                raise CommandError("aborted; nothing was killed")
        self._kill(incidents, opts["reason"])

    def _show(self, live: list[Incident]) -> None:
        self.stdout.write(f"{len(live)} incident(s) would be killed:")
        for incident in live[:SHOWN_BEFORE_ASKING]:
            self.stdout.write(f"  {incident.pk} {incident.name} ({incident.status})")
        if len(live) > SHOWN_BEFORE_ASKING:
            self.stdout.write(f"  ... and {len(live) - SHOWN_BEFORE_ASKING} more")

    def _kill(self, incidents: list[Incident], reason: str) -> None:
        killed = 0
        for incident in incidents:  # only those listed: not any started since
            try:
                report = operations.kill_incident(incident.pk, reason=reason, by=operator())
            except WorkflowError as exc:
                raise CommandError(f"{exc} ({killed} incident(s) killed before)") from exc
            killed += report.killed
            if report.killed:
                self.stdout.write(f"{report.incident_id} killed "
                                  f"({report.stopped_messages} message(s) stopped)")
            else:  # nothing to do is not an error
                stopped = (f"; {report.stopped_messages} message(s) stopped"
                           if report.stopped_messages else "")
                self.stdout.write(f"{report.incident_id} had already ended ({report.status}); "
                                  f"not killed{stopped}")
        self.stdout.write(f"{killed} incident(s) killed")
