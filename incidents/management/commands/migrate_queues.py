"""`manage.py migrate_queues`: redeclare RabbitMQ handler queues an older version declared."""
from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError

from incidents.engine import queue_migration
from incidents.exceptions import WorkflowError

from ._common import IncidentCommand


class Command(IncidentCommand):
    help = ("Move RabbitMQ handler queues declared by an older version (without "
            "x-max-priority) to this version's arguments, keeping their messages. Stop the "
            "workers first. A dry run unless --apply; safe to run again after a crash.")

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--apply", action="store_true",
                            help="do it (default: only list what would be done)")

    def handle(self, *args: Any, **opts: Any) -> None:
        try:
            report = queue_migration.migrate(apply=opts["apply"], say=self.stdout.write)
        except WorkflowError as exc:
            raise CommandError(str(exc)) from exc
        if report.broker == "embedded":
            self.stdout.write("the embedded broker has no queue arguments: nothing to migrate")
            return
        work = report.to_migrate
        if not work:
            self.stdout.write(f"all {len(report.queues)} handler queues are up to date: "
                              "nothing to migrate")
        elif report.applied:
            self.stdout.write(f"migrated {len(work)} queue(s) ({report.moved} message(s) "
                              "kept); the workers can start again")
        else:
            for state in work:
                self.stdout.write(f"would {state.plan()}")
            self.stdout.write(f"dry run: {len(work)} of {len(report.queues)} handler queue(s) "
                              "to migrate; stop the workers and run again with --apply")
