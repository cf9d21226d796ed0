"""`manage.py run_demo`: run a workflow end to end on local worker processes."""
from __future__ import annotations

import importlib
import pkgutil
import time
from types import ModuleType
from typing import Any

from django.core.management.base import CommandError
from django.db.models import Count

from incidents.formatting import human_duration
from incidents.models import Incident, MessageLog

from ._common import IncidentCommand, local_workers, positive_int


def demos() -> dict[str, ModuleType]:
    """The modules in workflows/ with a demo: they define start_demo() and check_demo()."""
    import workflows

    found = {}
    for info in pkgutil.iter_modules(workflows.__path__):
        try:
            module = importlib.import_module(f"workflows.{info.name}")
        except Exception:  # a module that fails to load has no demo; `manage.py check` says why
            continue
        if callable(getattr(module, "start_demo", None)) and callable(getattr(module, "check_demo", None)):
            found[info.name] = module
    return found


def demo(name: str) -> ModuleType:
    """The demo module `name`, or a CommandError listing the demos there are."""
    found = demos()
    if name in found:
        return found[name]
    raise CommandError(f"--workflow {name!r} has no demo: {_why_no_demo(name)}; the demos are "
                       f"{', '.join(sorted(found)) or 'none'}")


def _why_no_demo(name: str) -> str:
    if not name.isidentifier():  # wildfire.demo, ../x
        return "a demo is a module directly in workflows/"
    try:
        importlib.import_module(f"workflows.{name}")
    except Exception as exc:  # whatever stops the import is the reason; `check` shows more
        if isinstance(exc, ModuleNotFoundError) and exc.name == f"workflows.{name}":
            return f"there is no module workflows.{name}"
        return f"workflows.{name} fails to load ({exc!r})"
    return f"workflows.{name} defines no start_demo() and check_demo()"


class Command(IncidentCommand):
    help = "Start worker processes, run a demo workflow, show progress, check the result."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--workflow", default="quicksort",
                            help="module in workflows/ with start_demo() and check_demo()")
        parser.add_argument("--size", type=positive_int, default=1000, help="problem size")
        parser.add_argument("--workers", type=positive_int, default=2,
                            help="worker processes to start")
        parser.add_argument("--timeout", type=float, default=300, help="seconds to wait")

    def handle(self, *args: Any, **opts: Any) -> None:
        module = demo(opts["workflow"])  # before any worker starts
        with local_workers(self, "demo", opts["workers"]):
            self.stdout.write(f"started {opts['workers']} worker processes")
            started = time.monotonic()
            try:
                incident_id, data = module.start_demo(opts["size"])
            except ValueError as exc:  # a size this workflow cannot take; it declared nothing
                raise CommandError(f"{opts['workflow']} demo: {exc}") from None
            self.stdout.write(f"incident {incident_id}: {opts['workflow']} of size {opts['size']}")
            incident = self._follow(incident_id, started + opts["timeout"])
            elapsed = time.monotonic() - started
        counts = self._counts(incident_id)
        ran_for = (human_duration((incident.completed_at - incident.activated_at).total_seconds())
                   if incident.activated_at and incident.completed_at else "-")
        self.stdout.write(f"incident {incident_id} {incident.status}: ran for {ran_for} (first "
                          f"handler's start to the end, as in the admin); the demo took "
                          f"{elapsed:.1f} s with its set-up and polling; messages: {counts}")
        if incident.status != "COMPLETE":
            raise CommandError(f"incident ended {incident.status}: {incident.comment}")
        try:
            self.stdout.write(self.style.SUCCESS(module.check_demo(incident_id, data)))
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
