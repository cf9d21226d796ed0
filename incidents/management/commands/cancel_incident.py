"""`manage.py cancel_incident ID [--kill-after N]`: cancel one incident, or drain it."""
from __future__ import annotations

import argparse
import datetime as dt
import time
from typing import Any

from django.core.management.base import CommandError
from django.utils import timezone

from incidents.engine import draining, incidents_db, interventions, operations, releases
from incidents.exceptions import WorkflowError
from incidents.models import Incident

from ._common import IncidentCommand, operator

#: How long past the drain's deadline to wait for a worker to run its cleanup.
CLEANUP_GRACE_SECONDS = 60
COUNTDOWN_EVERY_SECONDS = 5
POLL_SECONDS = 0.5


def drain_seconds(text: str) -> int:
    """argparse type for --kill-after."""
    try:
        return interventions.check_drain_seconds(int(text))
    except (ValueError, WorkflowError):
        raise argparse.ArgumentTypeError(
            f"must be a whole number of seconds from {interventions.DRAIN_SECONDS_MIN} to "
            f"{interventions.DRAIN_SECONDS_MAX}, not {text!r}") from None


class Command(IncidentCommand):
    help = ("Cancel an incident: CANCELLED with a reason; messages already queued are not "
            "handled; cleanup runs once nothing is in flight. An incident that has already "
            "ended is left as it is (exit status 0). With --kill-after N, drain then kill: "
            "handlers still running N seconds later are killed and it ends KILLED.")

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("incident_id", help="the IncidentID, or its first 8+ characters")
        parser.add_argument("--reason", default="", help="why (kept with the incident)")
        parser.add_argument("--kill-after", type=drain_seconds, metavar="N",
                            help="drain, then kill: let running handlers finish for up to N "
                                 "seconds (1-3600), then kill them; waits for the outcome")
        parser.add_argument("--no-wait", action="store_true",
                            help="with --kill-after: return at once instead of waiting")

    def handle(self, *args: Any, **opts: Any) -> None:
        if opts["no_wait"] and opts["kill_after"] is None:
            raise CommandError("--no-wait goes with --kill-after N (a plain cancel never waits)")
        try:
            incident_id = incidents_db.resolve(opts["incident_id"], where="cancel")
            if opts["kill_after"] is not None:
                self._drain(incident_id, opts["kill_after"], opts["reason"], opts["no_wait"])
                return
            cancelled = operations.cancel_incident(incident_id, reason=opts["reason"],
                                                   by=operator())
        except WorkflowError as exc:
            raise CommandError(str(exc)) from exc
        if cancelled:
            self.stdout.write(f"cancelled {incident_id}")
        else:  # nothing to do is not an error
            self.stdout.write(f"{incident_id} had already ended "
                              f"({incidents_db.status_of(incident_id)}); not cancelled")

    def _drain(self, incident_id: str, seconds: int, reason: str, no_wait: bool) -> None:
        report = interventions.drain_incident(incident_id, seconds=seconds, reason=reason,
                                              by=operator())
        if not report.started or report.deadline is None:
            self.stdout.write(f"{incident_id} had already ended ({report.status}); not drained")
            return
        self.stdout.write(f"draining {incident_id}: cancelled; what still runs after {seconds} s "
                          "is killed")
        if no_wait:
            return
        incident = self._wait(incident_id, report.deadline)
        self.stdout.write(f"{incident_id} {incident.status}: {incident.comment}")

    def _wait(self, incident_id: str, deadline: dt.datetime) -> Incident:
        """Poll until the drain's cleanup has run, printing a countdown every few seconds."""
        give_up = deadline + dt.timedelta(seconds=CLEANUP_GRACE_SECONDS)
        said_at = -float(COUNTDOWN_EVERY_SECONDS)
        while True:
            incident = Incident.objects.get(pk=incident_id)
            if incident.cleaned_at is not None:
                return incident
            if releases.cleanup_ran(incident_id, incident.completed_at):
                raise CommandError(
                    f"{incident_id} is drained and cleaned up, but the release of external "
                    f"resources it held is outstanding: {releases.describe_outstanding(incident_id)}; "
                    "see its page in the admin (retry a failed release there)")
            now = timezone.now()
            if now > give_up:
                raise CommandError(
                    f"no worker ran the cleanup of {incident_id} within "
                    f"{CLEANUP_GRACE_SECONDS} s of the drain's deadline (is a worker running, "
                    "consuming _Cleanup?); the drain goes on when one does")
            if time.monotonic() - said_at >= COUNTDOWN_EVERY_SECONDS:
                said_at = time.monotonic()
                left = (deadline - now).total_seconds()
                running = draining.still_running(incident_id)
                self.stdout.write(f"  {left:.0f} s left; {running} message(s) in flight" if left > 0
                                  else f"  deadline passed; {running} message(s) in flight, "
                                  "waiting for the cleanup to kill them")
            time.sleep(POLL_SECONDS)
