"""`manage.py run_demo`: run a workflow end to end on local worker processes."""
from __future__ import annotations

import importlib
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db.models import Count

from incidents.models import Incident, MessageLog
from incidents.processes import WorkerGroup, worker_env


class Command(BaseCommand):
    help = "Start worker processes, run a demo workflow, show progress, check the result."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--workflow", default="quicksort",
                            help="module in workflows/ with start_demo() and check_demo()")
        parser.add_argument("--size", type=int, default=1000, help="problem size")
        parser.add_argument("--workers", type=int, default=2, help="worker processes to start")
        parser.add_argument("--timeout", type=float, default=300, help="seconds to wait")

    def handle(self, *args: Any, **opts: Any) -> None:
        try:
            module = importlib.import_module(f"workflows.{opts['workflow']}")
            start_demo, check_demo = module.start_demo, module.check_demo
        except (ImportError, AttributeError) as exc:
            raise CommandError(f"workflow {opts['workflow']!r} has no demo: {exc}") from exc
        with WorkerGroup(env=worker_env()) as group:
            for n in range(1, opts["workers"] + 1):
                group.start(f"demo{n}")
            self.stdout.write(f"started {opts['workers']} worker processes")
            started = time.monotonic()
            incident_id, data = start_demo(opts["size"])
            self.stdout.write(f"incident {incident_id}: {opts['workflow']} of size {opts['size']}")
            incident = self._follow(incident_id, started + opts["timeout"])
            elapsed = time.monotonic() - started
        counts = self._counts(incident_id)
        self.stdout.write(f"incident {incident_id} {incident.status} in {elapsed:.1f} s; "
                          f"messages: {counts}")
        if incident.status != "COMPLETE":
            raise CommandError(f"incident ended {incident.status}: {incident.comment}")
        try:
            self.stdout.write(self.style.SUCCESS(check_demo(incident_id, data)))
        except ValueError as exc:
            raise CommandError(str(exc)) from exc

    def _follow(self, incident_id: str, deadline: float) -> Incident:
        while True:
            incident = Incident.objects.get(pk=incident_id)
            self.stdout.write(f"  {incident.status:9} {self._counts(incident_id)}")
            if not incident.is_live:
                return incident
            if time.monotonic() > deadline:
                raise CommandError(f"incident {incident_id} still {incident.status} at timeout")
            time.sleep(0.5)

    @staticmethod
    def _counts(incident_id: str) -> dict[str, int]:
        rows = (MessageLog.objects.filter(incident_id=incident_id).values("status")
                .annotate(n=Count("id")).order_by("status"))
        return {row["status"]: row["n"] for row in rows}
