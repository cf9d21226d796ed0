"""Resuming an incident that ended ERROR once its handler is fixed: what its cleanup keeps for
that and for how long, why a Resume is refused, and the Resume itself (docs/ARCHITECTURE.md,
"Resuming a failed incident")."""
from __future__ import annotations

import logging
import os
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from incidents import conf
from incidents.engine import audit, incidents_db, ledger, outbox, releases, scratch
from incidents.engine.registry import CLEANUP_QUEUE
from incidents.engine.validation import check_text
from incidents.exceptions import NotResumable, WorkflowConfigError
from incidents.models import (
    IN_FLIGHT_STATUSES,
    LIVE_INCIDENT_STATUSES,
    HandlerState,
    Incident,
    IncidentStatus,
    MessageLog,
    MessageStatus,
)

logger = logging.getLogger(__name__)

#: Failed incidents whose kept state one cleanup removes at most, so its commit stays short.
EXPIRE_BATCH = 20
#: Scratch directories one cleanup looks at for expired ones.
SCRATCH_SCAN = 1000
#: Refused messages the audit record names one by one; the rest are counted.
NAMED_IN_RECORD = 100
#: How an operator's action that removed what was kept reads in a refusal.
_DONE = {"cancel": "cancelled", "kill": "killed"}


def retention_hours() -> float:
    """WORKFLOW_RESUME_RETENTION_HOURS, checked: a number of hours >= 0 (0: keep nothing)."""
    return conf.non_negative("RESUME_RETENTION_HOURS", unit="hours", example="72",
                             meaning="how long a failed incident stays resumable; 0: not at all")


def _kept_since(now: datetime) -> datetime | None:
    """Incidents that failed before this have lost what they kept; None: none has."""
    try:
        return now - timedelta(hours=retention_hours())
    except OverflowError:  # longer than datetime reaches: kept for ever
        return None


def keeps_for_resume(incident_id: str, cleanup_message: dict[str, Any]) -> bool:
    """Whether this cleanup keeps the incident's persisted state and scratch directory for a
    Resume: it is the unforced cleanup of an incident that ended ERROR (a Cancel or Kill
    after the failure forces a full one). A bad setting keeps nothing (and says so)."""
    if cleanup_message.get("force"):
        return False
    try:
        if retention_hours() == 0:
            return False
    except WorkflowConfigError as exc:
        logger.error("incident %s: nothing is kept for a resume: %s", incident_id, exc)
        return False
    ended = Incident.objects.filter(pk=incident_id).values_list("status", "completed_at").first()
    if ended is None or ended[0] != IncidentStatus.ERROR or ended[1] is None:
        return False
    # Not if a Cancel or Kill after the failure asked for a full cleanup (which may have run
    # before this one, that waited for the incident's last runs).
    return not _forced_cleanup_since(incident_id, ended[1])


def _forced_cleanup_since(incident_id: str, failed_at: datetime) -> bool:
    return MessageLog.objects.filter(incident_id=incident_id, destination=CLEANUP_QUEUE,
                                     submitted__gte=failed_at, body__force=True).exists()


def expire_batch(*, now: datetime | None = None) -> int:
    """Remove what failed incidents kept for a resume once RESUME_RETENTION_HOURS have passed
    since they failed, for up to EXPIRE_BATCH incidents; how many. Called by every
    incident's cleanup, so retention holds without a cron job; a bad setting is logged, not
    raised: it must not stop cleanups."""
    try:
        cutoff = _kept_since(now or timezone.now())
    except WorkflowConfigError as exc:
        logger.error("what failed incidents kept for a resume is not removed: %s", exc)
        return 0
    if cutoff is None:
        return 0
    expired = Incident.objects.filter(status=IncidentStatus.ERROR, cleaned_at__isnull=False,
                                      completed_at__lt=cutoff)
    ids = {str(pk) for pk in expired.filter(pk__in=HandlerState.objects.values("incident_id"))
           .values_list("pk", flat=True)[:EXPIRE_BATCH]}
    if len(ids) < EXPIRE_BATCH:
        ids |= {str(pk) for pk in expired.filter(pk__in=_scratch_directories())
                .values_list("pk", flat=True)[:EXPIRE_BATCH - len(ids)]}
    if not ids:
        return 0
    HandlerState.objects.filter(incident_id__in=ids).delete()
    for incident_id in ids:
        scratch.remove(incident_id)
    logger.info("removed what %d failed incident(s) kept for a resume, older than %g hours: "
                "%s", len(ids), retention_hours(), sorted(ids))
    return len(ids)


def _scratch_directories() -> list[str]:
    try:
        names = sorted(os.listdir(scratch.root()))[:SCRATCH_SCAN]
    except FileNotFoundError:  # no handler has made one yet
        return []
    found = []
    for name in names:
        try:
            found.append(str(uuid.UUID(name)))
        except ValueError:
            continue
    return found


def why_not(incident: Incident, *, now: datetime | None = None) -> str:
    """Why the incident cannot be resumed, in words for the operator; "" if it can."""
    if incident.status in LIVE_INCIDENT_STATUSES:
        return f"it is {incident.status}: it has not failed; only an incident that ended ERROR can be resumed"
    if incident.status != IncidentStatus.ERROR or incident.completed_at is None:
        return (f"it ended {incident.status}, not ERROR; only an incident whose handler failed "
                "can be resumed")
    failed_at = incident.completed_at
    removed_by = _removed_since(str(incident.pk), failed_at)
    if removed_by:
        return removed_by
    try:
        hours = retention_hours()
    except WorkflowConfigError as exc:
        return str(exc)
    if hours == 0:
        return ("failed incidents keep nothing for a resume here "
                "(WORKFLOW_RESUME_RETENTION_HOURS=0)")
    cutoff = _kept_since(now or timezone.now())
    if cutoff is not None and failed_at < cutoff:
        return (f"its state was removed after {hours:g} hours (WORKFLOW_RESUME_RETENTION_HOURS); "
                f"it failed at {failed_at:%Y-%m-%d %H:%M:%S %Z}")
    outstanding = releases.outstanding(str(incident.pk)).count()
    if incident.cleaned_at is None and outstanding:  # its resources were released at its end
        return (f"{outstanding} release(s) of its external resources are outstanding; once "
                "they are released (retry a FAILED one) it can be resumed, and its handlers "
                "register what they submit again")
    if incident.cleaned_at is None:
        waiting = MessageLog.objects.filter(incident_id=incident.pk,
                                            status__in=IN_FLIGHT_STATUSES).count()
        return (f"its cleanup has not run yet ({waiting} message(s) in flight, its cleanup "
                "included); try again once it has")
    if not ledger.to_run_again(str(incident.pk), failed_at).exists():
        return ("none of its messages failed or was left unhandled by its failure: there is "
                "nothing to run again")
    return ""


def _removed_since(incident_id: str, failed_at: datetime) -> str:
    """Why what was kept is gone, if a forced cleanup (a Cancel or Kill after the failure)
    was requested; "" if none was."""
    if not _forced_cleanup_since(incident_id, failed_at):
        return ""
    for action in audit.history(incident_id):
        if action.at >= failed_at and action.action in _DONE:
            return (f"it was {_DONE[action.action]} by {action.by} at "
                    f"{action.at:%Y-%m-%d %H:%M:%S %Z} after it failed, which removed its state")
    return "a forced cleanup after it failed removed its state"


@dataclass
class Plan:
    """What a Resume of the incident would do, for the admin's confirmation page."""

    incident: Incident
    refusal: str  # "" if it can be resumed
    failed: list[MessageLog]  # delivered again, a new attempt each
    refused: int  # refused while it had failed: queued again
    kept_hours: float = 0.0  # how long after the failure a resume is possible


def plan(incident_id: Any) -> Plan:
    incident = incidents_db.get(incident_id, where="resume")
    refusal = why_not(incident)
    if refusal or incident.completed_at is None:
        return Plan(incident, refusal, [], 0)
    rows = ledger.to_run_again(str(incident.pk), incident.completed_at)
    return Plan(incident, "", list(rows.filter(status=MessageStatus.ERROR).order_by("completed")),
                rows.filter(status=MessageStatus.NOT_PROCESSED).count(), retention_hours())


@dataclass
class ResumeReport:
    incident_id: str
    failed: list[str]  # MessageIDs of the failed messages delivered again
    refused: int  # messages refused while it had failed, queued again


def resume_incident(incident_id: Any, *, reason: str = "", by: str = "") -> ResumeReport:
    """Resume a failed incident after its handler was fixed: ACTIVE again, its failed
    messages delivered again (a new attempt each, same MessageIDs), the messages refused
    while it had failed queued again; recorded. Raises NotResumable with the reason.

        resume_incident("3f2a9c1e-...", reason="fixed the parser", by="alice (admin)")
    """
    incident = incidents_db.get(incident_id, where="resume")
    check_text(reason, where="resume", name="reason", max_length=10_000)
    check_text(by, where="resume", name="by", max_length=200)
    with transaction.atomic():
        # Locked (on PostgreSQL) against a second Resume, a Kill or a Cancel at the same time.
        incident = Incident.objects.select_for_update().get(pk=incident.pk)
        refusal = why_not(incident)
        if refusal or incident.completed_at is None:
            raise NotResumable(f"resume: incident {incident.pk} cannot be resumed: {refusal}",
                               incident_id=str(incident.pk))
        failed_at = incident.completed_at
        failed = list(ledger.to_run_again(str(incident.pk), failed_at)
                      .filter(status=MessageStatus.ERROR).order_by("completed"))
        if not ledger.resume(str(incident.pk), failed_at):
            raise NotResumable(f"resume: incident {incident.pk} changed while being resumed; "
                               "look at it again", incident_id=str(incident.pk))
        rows = ledger.requeue_for_resume(
            str(incident.pk), failed_at=failed_at, max_attempts=int(conf.get("MAX_ATTEMPTS")),
            comment=f"resumed by {by or 'unknown operator'}" + (f": {reason}" if reason else ""))
        failed_ids = {str(row.pk) for row in failed}
        refused = [str(row.pk) for row in rows if str(row.pk) not in failed_ids]
        outbox.publish_on_commit(rows)
        audit.record(str(incident.pk), "resume", by=by, reason=reason,
                     status_before=IncidentStatus.ERROR, failed_at=failed_at.isoformat(),
                     failure=incident.comment[:2000], ended_by=incident.ended_by,
                     failed=[{"id": str(row.pk), "queue": row.destination,
                              "attempts": row.attempts, "error": error_line(row.comment)}
                             for row in failed],
                     refused=refused[:NAMED_IN_RECORD], refused_count=len(refused))
    logger.warning("incident %s resumed by %s: %d failed message(s) delivered again, %d "
                   "refused one(s) queued again", incident.pk, by or "?", len(failed),
                   len(refused))
    return ResumeReport(str(incident.pk), [str(row.pk) for row in failed], len(refused))


def error_line(text: str) -> str:
    """The exception line of a traceback (the last non-empty line), shortened."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:500] if lines else ""
