"""send() and FlushMessages(): stage messages, then commit and publish them."""
from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from incidents import conf
from incidents.engine import context, contracts, incidents_db, lifecycle, outbox, registry, timers
from incidents.engine.context import StagedMessage
from incidents.engine.validation import (
    HEALTH_CHECK_INCIDENT,
    HEALTH_CHECK_INCIDENT_ID,
    check_incident_id,
    check_queue_name,
    check_text,
    to_json,
)
from incidents.exceptions import MessageError, MessageTypeError
from incidents.models import LIVE_INCIDENT_STATUSES

logger = logging.getLogger(__name__)


def send(message: Any, queue: Any, src_tag: Any = "", dest_tag: Any = "",
         provided_caller: Any = None, *, delay: Any = None,
         not_before: Any = None) -> str | None:
    if isinstance(message, str) and isinstance(queue, dict):
        message, queue = queue, message  # the seed text's send(queue, message) order
    if not isinstance(message, dict):
        raise MessageTypeError(f"send(): message {message!r:.80} is a {type(message).__name__}; "
                               "send a dict with an 'IncidentID' key")
    check_queue_name(queue)
    for name, tag in (("src_tag", src_tag), ("dest_tag", dest_tag)):
        check_text(tag, where="send()", name=name, max_length=200)
    if provided_caller is not None:
        check_text(provided_caller, where="send()", name="providedCaller", max_length=200)
    due = timers.due_time(delay, not_before, where="send()")
    if "IncidentID" not in message:
        raise MessageError("send(): message has no 'IncidentID' key; add the id returned by "
                           "CreateIncident()", queue=queue)
    incident_id = check_incident_id(message["IncidentID"], where="send()")
    run = context.current_run.get()
    if run is None and incident_id == HEALTH_CHECK_INCIDENT_ID:
        lifecycle.open_health_check_incident()  # a new probe: the incident is live for it
    staging = context.staging()
    originator = staging.originator if provided_caller is None else provided_caller
    status = None if run is not None and incident_id == run.incident_id else \
        incidents_db.require(incident_id, where="send()")
    # Validate the body as it will go out, before touching the caller's dict.
    message_id = run.next_message_id() if run is not None else str(uuid.uuid4())
    # The health check's name stays in the body: its handlers compare against it.
    body = {**message, "IncidentID": HEALTH_CHECK_INCIDENT if message["IncidentID"] ==
            HEALTH_CHECK_INCIDENT else incident_id, "MessageID": message_id,
            "originator": originator}
    text = to_json(body, where="send()", name="message")
    limit, size = conf.get("MAX_MESSAGE_BYTES"), len(text.encode())
    if size > limit:
        raise MessageError(f"send(): message is {size} bytes, over the limit of "
                           f"{limit} (WORKFLOW_MAX_MESSAGE_BYTES); send a reference to the data "
                           "(a file path or database key) instead of the data itself",
                           incident_id=incident_id, queue=queue)
    fault = contracts.violation(queue, json.loads(text)) if registry.schema_of(queue) else None
    if fault is not None:  # checked as its handler will see it, engine keys included
        raise MessageError(f"send(): {fault}", incident_id=incident_id, queue=queue)
    if status is not None and status not in LIVE_INCIDENT_STATUSES:
        logger.warning("send(): incident %s is %s; message to %s dropped",
                       incident_id, status, queue)
        return None
    message.update(MessageID=message_id, originator=originator)
    staging.outbox.append(StagedMessage(
        id=message_id, incident_id=incident_id, queue=queue, body=json.loads(text),
        originator=originator, src_tag=src_tag, dest_tag=dest_tag, not_before=due,
        # The run's incident's priority came with its message; any other is read at commit.
        priority=run.priority if run is not None and incident_id == run.incident_id else None))
    return message_id


def flush() -> int:
    """Commit and publish what is staged so far; return how many messages went out."""
    staging = context.staging()
    staged, staging.outbox = staging.outbox, []
    if not staged:
        return 0
    try:
        outbox.commit_and_publish(staged)
    except Exception:
        staging.outbox[:0] = staged  # nothing was committed: keep them for the next flush
        raise
    return len(staged)
