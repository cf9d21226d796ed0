"""`manage.py send_message ID QUEUE JSON`: an operator sends a message into a live incident."""
from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError

from incidents.engine import incidents_db, interventions
from incidents.exceptions import WorkflowError

from ._common import IncidentCommand, json_object, operator


class Command(IncidentCommand):
    help = ("Send a JSON object to a queue of a live (PENDING or ACTIVE) incident, as you: "
            "validated as send() validates, logged with originator 'operator:<you>', drawn "
            "in the graph as coming from you. E.g. hand in data an external service never "
            "delivered, or run a step again. Prints the MessageID.")

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("incident_id", help="the IncidentID, or its first 8+ characters")
        parser.add_argument("queue", help="the queue to send to (one a registered handler serves)")
        parser.add_argument("message", help='the message, a JSON object, e.g. \'{"values": [1, 2]}\' '
                                            "(IncidentID is added)")
        parser.add_argument("--reason", default="", help="why (kept in the incident's history)")
        parser.add_argument("--allow-unregistered-queue", action="store_true",
                            help="send to QUEUE although no handler registered in this process "
                                 "serves it (one in another process does)")

    def handle(self, *args: Any, **opts: Any) -> None:
        message = json_object(opts["message"], "MESSAGE")
        try:
            incident_id = incidents_db.resolve(opts["incident_id"], where="send_message")
            message_id = interventions.inject_message(
                incident_id, opts["queue"], message, reason=opts["reason"], by=operator(),
                allow_unregistered_queue=opts["allow_unregistered_queue"])
        except WorkflowError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"sent {message_id} to {opts['queue']} for {incident_id}")
