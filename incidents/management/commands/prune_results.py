"""`manage.py prune_results`: apply WORKFLOW_RESULTS_RETENTION_DAYS to the result files."""
from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError

from incidents.engine import result_files
from incidents.exceptions import WorkflowConfigError

from ._common import IncidentCommand


class Command(IncidentCommand):
    help = ("Delete the result files (workflow.AttachResult) of ended incidents attached more "
            "than WORKFLOW_RESULTS_RETENTION_DAYS days ago (0: none), and files in the results "
            "storage that no result names (left by a rolled-back commit or a deleted "
            "incident, older than an hour). Run it daily (cron, a systemd timer); each "
            "incident's cleanup also deletes a batch of expired results.")

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--dry-run", action="store_true",
                            help="list what would be deleted; delete nothing")

    def handle(self, *args: Any, **opts: Any) -> None:
        try:
            days = result_files.retention_days()
            pruned = result_files.prune(dry_run=opts["dry_run"])
        except WorkflowConfigError as exc:
            raise CommandError(str(exc)) from exc
        verb = "would delete" if opts["dry_run"] else "deleted"
        if opts["verbosity"] >= 2 or opts["dry_run"]:
            for name in pruned.expired + pruned.orphans:
                self.stdout.write(f"  {name}")
        kept = "kept for ever (0)" if days == 0 else f"{days:g} days"
        self.stdout.write(f"{verb} {len(pruned.expired)} result files past retention ({kept}) "
                          f"and {len(pruned.orphans)} orphaned files")
