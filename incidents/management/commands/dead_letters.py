"""`manage.py dead_letters`: show (or purge) messages rejected into the dead-letter queue."""
from __future__ import annotations

from typing import Any

from incidents.engine import deadletter

from ._common import IncidentCommand, positive_int


class Command(IncidentCommand):
    help = ("List messages rejected into the _dead_letter queue (not JSON, pickle, foreign, "
            "unknown ids), oldest first. They stay queued unless --purge.")

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--limit", type=positive_int, default=100,
                            help="at most this many (oldest)")
        parser.add_argument("--purge", action="store_true", help="remove the ones listed")

    def handle(self, *args: Any, **opts: Any) -> None:
        letters = deadletter.inspect(opts["limit"], purge=opts["purge"])
        for letter in letters:
            self.stdout.write(f"from {letter.queue} ({letter.reason}, {letter.content_type}"
                              f"{', task ' + letter.task if letter.task else ''}): {letter.body[:200]}")
        self.stdout.write(f"{len(letters)} dead letter(s){' purged' if opts['purge'] else ''}")
