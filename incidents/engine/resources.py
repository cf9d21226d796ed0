"""External resources: what an incident holds outside the engine (an HPC job, a transfer, a
subscription), registered by its handlers and released when it ends (engine/releases.py).

RegisterResource() and ReleaseResource() inside a handler are part of its commit: a handler
that fails registers nothing, and a rerun of its message registers the same ref again, which
updates the one row (kind, release_queue, data: the latest registration wins). Outside a
handler they commit at once. Operators retry a FAILED release (retry_release).
"""
from __future__ import annotations

import functools
import json
import logging
from typing import Any

from django.db import transaction

from incidents import conf
from incidents.engine import audit, context, incidents_db, ledger, outbox, registry, releases
from incidents.engine.context import StagedMessage
from incidents.engine.validation import check_incident_id, check_queue_name, check_text, to_json
from incidents.exceptions import MessageError
from incidents.models import LIVE_INCIDENT_STATUSES, ExternalResource, ResourceStatus

logger = logging.getLogger(__name__)

MAX_KIND, MAX_REF = 100, 500  # the model's column lengths
#: Room left in a release message (WORKFLOW_MAX_MESSAGE_BYTES) for what the engine adds.
ENVELOPE_BYTES = 2_000


#: Resources not yet released (HELD, RELEASING, FAILED): an incident's, or all.
outstanding = releases.outstanding


def register(incident_id: Any, kind: Any, ref: Any, release_queue: Any = None,
             data: Any = None) -> None:
    where = "RegisterResource()"
    incident_id = check_incident_id(incident_id, where=where)
    check_text(kind, where=where, name="kind", max_length=MAX_KIND, empty_ok=False)
    check_text(ref, where=where, name="ref", max_length=MAX_REF, empty_ok=False)
    queue = "" if release_queue is None else _release_queue(release_queue, where)
    data = _data(data, where)
    status = incidents_db.require(incident_id, where=where)
    if status not in LIVE_INCIDENT_STATUSES:
        raise MessageError(f"{where}: incident {incident_id} has ended ({status}); register "
                           "a resource while the incident is live (its end releases it)",
                           incident_id=incident_id)
    existing = (ExternalResource.objects.filter(incident_id=incident_id, ref=ref)
                .values_list("status", flat=True).first())
    if existing in (ResourceStatus.RELEASING, ResourceStatus.FAILED):
        raise MessageError(f"{where}: resource {ref!r} of incident {incident_id} is {existing}: "
                           "its release is outstanding; register the new one under another "
                           "ref", incident_id=incident_id)
    run = context.current_run.get()
    hold = functools.partial(_hold, incident_id, ref, kind=kind, release_queue=queue,
                             data=data, by=run.originator if run else "")
    if run is not None:
        run.resource_refs.add((incident_id, ref))
        outbox_of_run = run.outbox  # the commit logs what the effect adds, after it runs
        run.in_commit.append(lambda: outbox_of_run.extend(hold()))
        return
    with transaction.atomic():
        staged = hold()
        if staged:
            outbox.commit_and_publish(staged)


def _release_queue(queue: Any, where: str) -> str:
    check_queue_name(queue)
    if registry.handler_for(queue) is None:
        raise MessageError(f"{where}: release_queue {queue!r} has no handler registered in "
                           "this process; register the release handler with "
                           f"workflow.RegisterHandler(handler, queue={queue!r}) in a workflow "
                           "module every worker loads", queue=queue)
    return str(queue)


def _data(data: Any, where: str) -> Any:
    if data is None:
        return {}
    text = to_json(data, where=where, name="data")
    limit = int(conf.get("MAX_MESSAGE_BYTES")) - ENVELOPE_BYTES
    if len(text.encode()) > limit:
        raise MessageError(f"{where}: data is {len(text.encode())} bytes as JSON, over the "
                           f"limit of {limit} (WORKFLOW_MAX_MESSAGE_BYTES less "
                           f"{ENVELOPE_BYTES}); it goes out in the release message: keep a "
                           "reference to the data instead")
    return json.loads(text)


def _hold(incident_id: str, ref: str, *, kind: str, release_queue: str, data: Any,
          by: str) -> list[StagedMessage]:
    """In the registering commit: hold the resource; if the incident ended meanwhile (its
    ending committed while the handler ran), release it at once: the release messages."""
    status = releases.lock_incident(incident_id)  # an ending commits wholly before or after
    refused = ledger.hold_resource(incident_id, ref, kind=kind, release_queue=release_queue,
                                   data=data, by=by)
    if refused:
        logger.warning("incident %s: resource %r not registered again: it is %s (its release "
                       "is outstanding)", incident_id, ref, refused)
        return []
    if status in LIVE_INCIDENT_STATUSES:
        return []
    logger.warning("incident %s ended (%s) while resource %r was being registered; released "
                   "at once", incident_id, status, ref)
    return releases.release_held(incident_id, by)


def release(incident_id: Any, ref: Any) -> None:
    where = "ReleaseResource()"
    incident_id = check_incident_id(incident_id, where=where)
    check_text(ref, where=where, name="ref", max_length=MAX_REF, empty_ok=False)
    incidents_db.require(incident_id, where=where)
    run = context.current_run.get()
    if not ((run is not None and (incident_id, ref) in run.resource_refs)
            or ExternalResource.objects.filter(incident_id=incident_id, ref=ref).exists()):
        known = list(ExternalResource.objects.filter(incident_id=incident_id)
                     .values_list("ref", flat=True)[:10])
        raise MessageError(f"{where}: incident {incident_id} has no resource {ref!r} (it has "
                           f"{', '.join(map(repr, known)) or 'none'}); register it with "
                           "RegisterResource() first", incident_id=incident_id)
    effect = functools.partial(releases.released_by_handler, incident_id, ref,
                               run.originator if run else "")
    if run is not None:
        run.in_commit.append(effect)
        return
    with transaction.atomic():
        effect()


def retry_release(resource_id: Any, *, by: str, reason: str = "") -> ExternalResource:
    """Send a FAILED resource's release again (a new release message, RELEASING), recorded.

        resources.retry_release(resource.pk, by="alice (admin)", reason="scheduler is back")
    """
    check_text(by, where="retry_release", name="by", max_length=200)
    check_text(reason, where="retry_release", name="reason", max_length=10_000)
    with transaction.atomic():
        resource = (ExternalResource.objects.select_for_update().filter(pk=resource_id)
                    .select_related("incident").first())
        if resource is None:
            raise MessageError(f"retry_release: no external resource has id {resource_id!r}")
        incident = resource.incident
        if resource.status != ResourceStatus.FAILED:
            raise MessageError(f"retry_release: resource {resource.ref!r} of incident "
                               f"{incident.pk} is {resource.status}; only a FAILED release "
                               "can be retried", incident_id=str(incident.pk))
        if incident.status in LIVE_INCIDENT_STATUSES:  # not after a Resume (it is refused)
            raise MessageError(f"retry_release: incident {incident.pk} is {incident.status}; "
                               "a release is retried once its incident has ended",
                               incident_id=str(incident.pk))
        if not resource.release_queue or not ledger.release_again(
                resource, f"release retried by {by or 'unknown operator'}"
                          + (f": {reason}" if reason else "")):
            raise MessageError(f"retry_release: resource {resource.ref!r} has nothing to "
                               "retry", incident_id=str(incident.pk))
        outbox.commit_and_publish([releases.release_message(resource, "")])
        audit.record(str(incident.pk), "retry_release", by=by, reason=reason,
                     resource=str(resource.pk), ref=resource.ref,
                     release_message=str(resource.release_message),
                     attempt=resource.release_attempts)
    logger.warning("incident %s: release of %s %s retried by %s (attempt %d)", incident.pk,
                   resource.kind, resource.ref, by or "?", resource.release_attempts)
    return ExternalResource.objects.get(pk=resource.pk)
