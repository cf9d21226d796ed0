"""`manage.py list_incidents`: a table of incidents with their messages by status."""
from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError
from django.utils import timezone
from django.utils.timesince import timesince

from incidents.models import Incident, IncidentStatus, MessageStatus
from incidents.queries import with_message_counts

from ._common import IncidentCommand, positive_int


class Command(IncidentCommand):
    help = "List incidents: id, name, kind, status, owner, age, messages by status, area."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--status", help=f"one of {', '.join(IncidentStatus.values)}")
        parser.add_argument("--kind", help="only incidents of this kind")
        parser.add_argument("--owner", help="only incidents of this owner (user_id)")
        parser.add_argument("--limit", type=positive_int, default=50, help="at most this many (newest)")

    def handle(self, *args: Any, **opts: Any) -> None:
        incidents = Incident.objects.all()
        if opts["status"]:
            status = opts["status"].upper()
            if status not in IncidentStatus.values:
                raise CommandError(f"--status {opts['status']!r} is not a status; use one of "
                                   f"{', '.join(IncidentStatus.values)}")
            incidents = incidents.filter(status=status)
        if opts["kind"]:
            incidents = incidents.filter(kind=opts["kind"])
        if opts["owner"]:
            incidents = incidents.filter(owner=opts["owner"])
        rows = with_message_counts(incidents.order_by("-created_at"))[: opts["limit"]]
        now = timezone.now()
        self.stdout.write(f"{'ID':36}  {'NAME':24}  {'KIND':14}  {'STATUS':9}  {'OWNER':12}  "
                          f"{'AGE':>14}  MESSAGES")
        for incident in rows:
            counts = " ".join(f"{status.value.replace(' ', '_')}={getattr(incident, f'n_{key}')}"
                              for key, status in _COUNTED if getattr(incident, f"n_{key}"))
            extra = "".join([
                f"  area={incident.upper_left_latlong}..{incident.lower_right_latlong}"
                if incident.upper_left_latlong else "",
                f"  duration={incident.duration:g}" if incident.duration is not None else ""])
            self.stdout.write(f"{incident.pk!s:36}  {incident.name[:24]:24}  {incident.kind[:14]:14}"
                              f"  {incident.status:9}  {(incident.owner or '-')[:12]:12}"
                              f"  {timesince(incident.created_at, now):>14}"
                              f"  {counts or '-'}{extra}")
        if not rows:
            self.stdout.write("(no incidents)")


_COUNTED = [(s.name.lower(), s) for s in MessageStatus]
