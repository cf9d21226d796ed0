"""`manage.py create_incident`: declare an incident and send its first message."""
from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError

from incidents.engine import operations, registry
from incidents.engine.validation import check_queue_name
from incidents.exceptions import WorkflowError

from ._common import IncidentCommand, json_object


def _kinds() -> str:
    return ", ".join(k.kind for k in registry.known_kinds()) or "none registered"


def _check_registered(queue: str) -> None:
    """A typo in --queue would start an incident that never runs; refuse it."""
    queues = registry.registered_queues()
    if queue not in queues:
        known = ", ".join(q for q in queues if not q.startswith("_")) or "none"
        raise CommandError(f"--queue {queue!r}: no registered handler serves it (registered "
                           f"queues: {known}); check the name, or pass "
                           "--allow-unregistered-queue if a handler in another process does")


class Command(IncidentCommand):
    help = "Declare an incident, print its IncidentID and start its workflow."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--name", required=True, help="a human name for the incident")
        parser.add_argument("--kind", required=True,
                            help="the kind of incident (case does not matter for a registered "
                                 f"kind); kinds that start by themselves: {_kinds()}")
        parser.add_argument("--date", help="when it started, ISO 8601 (default: now)")
        parser.add_argument("--parameters", help="JSON object of parameters")
        parser.add_argument("--queue", help="send the first message here instead of the "
                                            "kind's entry queue")
        parser.add_argument("--allow-unregistered-queue", action="store_true",
                            help="send to --queue although no handler registered in this "
                                 "process serves it (one in another process does)")
        parser.add_argument("--message", help="JSON object: the first message (with --queue)")
        parser.add_argument("--user-id", help="the owner (CreateIncident's user_id)")
        parser.add_argument("--upper-left", default="",
                            help="upper-left corner of the area, 'latitude/longitude'")
        parser.add_argument("--lower-right", default="",
                            help="lower-right corner of the area, 'latitude/longitude'")
        parser.add_argument("--duration", help="how long it runs (a number, e.g. hours)")
        parser.add_argument("--priority", help="low, normal (default), high or urgent (or "
                                               "0-3): its messages overtake lower ones")

    def handle(self, *args: Any, **opts: Any) -> None:
        if opts["message"] and not opts["queue"]:
            raise CommandError("--message needs --queue (the queue to send it to)")
        try:
            if opts["queue"] and not opts["allow_unregistered_queue"]:
                _check_registered(check_queue_name(opts["queue"]))
            incident_id = operations.start_incident(
                kind=opts["kind"], name=opts["name"], incident_date=opts["date"],
                parameters=json_object(opts["parameters"], "--parameters"),
                queue=opts["queue"], message=json_object(opts["message"], "--message") or
                ({} if opts["queue"] else None), owner=opts["user_id"],
                upper_left=opts["upper_left"], lower_right=opts["lower_right"],
                duration=opts["duration"], priority=opts["priority"])
        except WorkflowError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(incident_id)
