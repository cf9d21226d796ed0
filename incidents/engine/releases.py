"""Releasing an incident's external resources: the release messages its end sends, the
release handler's runs on the ended incident, and the incident's cleanup, which is not done
while a release is outstanding. Status changes are the ledger's (engine/ledger.py); the
handler API is engine/resources.py.

A release message is a plain message to the resource's `release_queue`, logged in the commit
that ends the incident; its handler runs although the incident has ended. Its success marks
the resource RELEASED in the handler's commit; its failure (after the queue's retries), or
the message logged NOT PROCESSED (a Kill, a cleanup that stopped waiting), marks it FAILED,
for an operator to retry (engine/resources.py retry_release).
"""
from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import QuerySet

from incidents.engine import ledger
from incidents.engine.context import StagedMessage
from incidents.engine.registry import CLEANUP_QUEUE
from incidents.models import (
    LIVE_INCIDENT_STATUSES,
    OUTSTANDING_RESOURCE_STATUSES,
    ExternalResource,
    Incident,
    MessageLog,
    MessageStatus,
)

logger = logging.getLogger(__name__)

NOTHING_TO_CALL = "released at the incident's end: it has no release_queue, nothing to call"


def outstanding(incident_id: str | None = None) -> QuerySet[ExternalResource]:
    """Resources not yet released (HELD, RELEASING, FAILED): the incident's, or all."""
    rows = ExternalResource.objects.filter(status__in=OUTSTANDING_RESOURCE_STATUSES)
    return rows if incident_id is None else rows.filter(incident_id=incident_id)


def release_message(resource: ExternalResource, originator: str) -> StagedMessage:
    """The message that asks `resource.release_queue`'s handler to release it."""
    assert resource.release_message is not None
    message_id, incident_id = str(resource.release_message), str(resource.incident_id)
    body: dict[str, Any] = {
        "IncidentID": incident_id, "MessageID": message_id, "originator": originator,
        "Resource": {"id": str(resource.pk), "kind": resource.kind, "ref": resource.ref,
                     "data": resource.data},
        "ReleaseAttempt": resource.release_attempts,
    }
    return StagedMessage(id=message_id, incident_id=incident_id, queue=resource.release_queue,
                         body=body, originator=originator)


def release_held(incident_id: str, originator: str) -> list[StagedMessage]:
    """In the commit that ends the incident: release each resource it still holds, once
    (those RELEASING or RELEASED already are left alone); the release messages to log."""
    # Its own transaction for an ending outside a handler (autocommit); no savepoint inside
    # the caller's.
    with transaction.atomic(savepoint=False):
        releasing = ledger.release_held(incident_id, comment=NOTHING_TO_CALL)
    if releasing:
        logger.info("incident %s: releasing %d resource(s): %s", incident_id, len(releasing),
                    ", ".join(f"{r.kind} {r.ref} via {r.release_queue}" for r in releasing))
    return [release_message(resource, originator) for resource in releasing]


def is_release(message_id: str) -> bool:
    """Whether the message is the latest release message of a resource (one indexed read;
    asked only of messages to an incident that has ended)."""
    return ExternalResource.objects.filter(release_message=message_id).exists()


def lock_incident(incident_id: str) -> str | None:
    """Lock the incident's row for the rest of the transaction (PostgreSQL; SQLite runs one
    writer at a time), so an ending and a registration, or a cleanup and the last release,
    see each other's commits; its status."""
    return (Incident.objects.select_for_update().filter(pk=incident_id)
            .values_list("status", flat=True).first())


def released(message_id: str, incident_id: str, handler: str) -> None:
    """In the commit of a release handler's successful run: its resource is RELEASED."""
    if _mark_released(incident_id, ExternalResource.objects.filter(release_message=message_id),
                      f"released by {handler} (message {message_id})"):
        logger.info("incident %s: resource released by %s (message %s)", incident_id,
                    handler, message_id)


def released_by_handler(incident_id: str, ref: str, by: str) -> None:
    """ReleaseResource(): the resource is RELEASED, whatever its release was doing."""
    _mark_released(incident_id, ExternalResource.objects.filter(incident_id=incident_id, ref=ref),
                   f"released by {by or 'code outside a handler'} (ReleaseResource)")


def _mark_released(incident_id: str, rows: QuerySet[ExternalResource], comment: str) -> int:
    """`rows` RELEASED, the incident locked; an ended incident whose last outstanding
    release this was is marked cleaned. How many were released."""
    status = lock_incident(incident_id)
    count = ledger.resource_released(rows, comment)
    if status not in LIVE_INCIDENT_STATUSES:
        mark_cleaned_if_done(incident_id)
    return count


def cleanup_may_finish(incident_id: str, originator: str) -> tuple[bool, list[StagedMessage]]:
    """In the cleanup's commit: release what is still HELD (registered as the incident
    ended); whether the incident counts as cleaned up (no release outstanding), and the
    release messages to log."""
    lock_incident(incident_id)
    staged = release_held(incident_id, originator)
    left = list(outstanding(incident_id).values_list("status", flat=True))
    if left:
        logger.warning("incident %s: cleaned up, but %d release(s) of its external resources "
                       "are outstanding (%s); it is marked cleaned once they are released "
                       "(retry a FAILED one from the admin)", incident_id, len(left),
                       ", ".join(sorted(left)))
    return not left, staged


def mark_cleaned_if_done(incident_id: str) -> None:
    """The last outstanding release of an ended incident succeeded: if its cleanup has run
    (after its latest end) and left it uncleaned for this, it is cleaned now."""
    incident = Incident.objects.filter(pk=incident_id).values(
        "status", "completed_at", "cleaned_at").first()
    if (incident is None or incident["status"] in LIVE_INCIDENT_STATUSES
            or incident["cleaned_at"] is not None or outstanding(incident_id).exists()):
        return
    if cleanup_ran(incident_id, incident["completed_at"]):
        ledger.mark_cleaned(incident_id)
        logger.info("incident %s: its last outstanding release is done; cleaned up",
                    incident_id)


def cleanup_ran(incident_id: str, ended_at: datetime | None) -> bool:
    """Whether a cleanup of the incident ran after its latest end (`ended_at`); it is then
    not marked cleaned only while releases are outstanding."""
    cleanups = MessageLog.objects.filter(incident_id=incident_id, destination=CLEANUP_QUEUE,
                                         status=MessageStatus.COMPLETE)
    if ended_at is not None:
        cleanups = cleanups.filter(completed__gte=ended_at)
    return cleanups.exists()


def describe_outstanding(incident_id: str) -> str:
    """The incident's outstanding releases in a line, e.g. "hpc_job 4411 FAILED: ..."."""
    return "; ".join(f"{r.kind} {r.ref} {r.status}" + (f": {r.comment:.200}" if r.comment else "")
                     for r in outstanding(incident_id)[:5])
