"""`manage.py create_incident`: declare an incident and send its first message."""
from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from incidents.engine import operations, registry
from incidents.exceptions import WorkflowError

from ._common import json_object


def _kinds() -> str:
    return ", ".join(k.kind for k in registry.known_kinds()) or "none registered"


class Command(BaseCommand):
    help = "Declare an incident, print its IncidentID and start its workflow."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--name", required=True, help="a human name for the incident")
        parser.add_argument("--kind", required=True,
                            help=f"the kind of incident; kinds that start by themselves: {_kinds()}")
        parser.add_argument("--date", help="when it started, ISO 8601 (default: now)")
        parser.add_argument("--parameters", help="JSON object of parameters")
        parser.add_argument("--queue", help="send the first message here instead of the "
                                            "kind's entry queue")
        parser.add_argument("--message", help="JSON object: the first message (with --queue)")
        parser.add_argument("--user-id", help="the owner (CreateIncident's user_id)")
        parser.add_argument("--upper-left", default="",
                            help="upper-left corner of the area, 'latitude/longitude'")
        parser.add_argument("--lower-right", default="",
                            help="lower-right corner of the area, 'latitude/longitude'")
        parser.add_argument("--duration", help="how long it runs (a number, e.g. hours)")

    def handle(self, *args: Any, **opts: Any) -> None:
        if opts["message"] and not opts["queue"]:
            raise CommandError("--message needs --queue (the queue to send it to)")
        try:
            incident_id = operations.start_incident(
                kind=opts["kind"], name=opts["name"], incident_date=opts["date"],
                parameters=json_object(opts["parameters"], "--parameters"),
                queue=opts["queue"], message=json_object(opts["message"], "--message") or
                ({} if opts["queue"] else None), owner=opts["user_id"],
                upper_left=opts["upper_left"], lower_right=opts["lower_right"],
                duration=opts["duration"])
        except WorkflowError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(incident_id)
