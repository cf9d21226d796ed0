"""`manage.py serve`: the admin on 127.0.0.1 with local worker processes (for `make serve`)."""
from __future__ import annotations

from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand

from incidents.processes import WorkerGroup, worker_env


class Command(BaseCommand):
    help = "Start worker processes and the admin at http://127.0.0.1:PORT/admin/ until Ctrl+C."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--workers", type=int, default=2, help="worker processes to start")

    def handle(self, *args: Any, **opts: Any) -> None:
        with WorkerGroup(env=worker_env()) as group:
            for n in range(1, opts["workers"] + 1):
                group.start(f"serve{n}")
            self.stdout.write(f"{opts['workers']} workers running (logs in var/logs/); admin at "
                              f"http://127.0.0.1:{opts['port']}/admin/")
            call_command("runserver", f"127.0.0.1:{opts['port']}", use_reloader=False)
