"""The outbox: messages become log rows in the sender's transaction, then get published.

A row is QUEUED when committed and SENT once the broker has it. Rows left QUEUED (broker
down, process killed between commit and publish) are published by the relay, so a
committed message is never lost; a message published twice is handled once (dispatch).

A handler's messages are not marked SENT one by one, in a transaction each: the thread
marks what it published, in one statement, in a commit at least MARK_SENT_AFTER_SECONDS
later, when most of them are being handled already (and no longer QUEUED). Until then they
look unpublished, which costs at most a second copy from the relay if one waits in the
broker for RELAY_STALE_SECONDS while its thread commits nothing; it is handled once.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any

from amqp.exceptions import ChannelError  # also what kombu's virtual transports raise
from django.db import transaction
from django.utils import timezone

from incidents import conf
from incidents.engine import deadletter, failpoints, lifecycle
from incidents.engine.context import StagedEnding, StagedMessage
from incidents.models import IncidentStatus, MessageLog, MessageStatus

logger = logging.getLogger(__name__)

TASK_PREFIX = "workflow."
MARK_SENT_AFTER_SECONDS = 1.0
MARK_SENT_MAX_IDS = 1000
#: Refusals by the broker after which a message is given up (about 2.5 minutes of tries).
MAX_PUBLISH_FAILURES = 5
_unmarked = threading.local()  # .ids, .since: published by this thread, not marked SENT


def task_name(queue: str) -> str:
    return f"{TASK_PREFIX}{queue}"


def log_rows(staged: Iterable[StagedMessage], *, status: str = MessageStatus.QUEUED,
             comment: str = "") -> list[MessageLog]:
    now = timezone.now()
    return [
        MessageLog(
            id=m.id, incident_id=m.incident_id, originator=m.originator, destination=m.queue,
            src_tag=m.src_tag, dest_tag=m.dest_tag, status=status, submitted=now,
            comment=comment, body=m.body,
        )
        for m in staged
    ]


def insert(rows: Sequence[MessageLog]) -> None:
    """Insert log rows inside the caller's transaction; a row that exists is left alone
    (a rerun of a handler regenerates the same MessageIDs)."""
    if rows:
        MessageLog.objects.bulk_create(rows, ignore_conflicts=True)


def publish(rows: Sequence[MessageLog], *, mark_later: bool = False) -> int:
    """Publish committed QUEUED rows and mark them SENT (`mark_later`: in this thread's next
    mark_published() call); return how many went out.

    Must run after the commit that inserted them. If the broker is unreachable the rows
    stay QUEUED for the relay and the caller carries on. A row the broker refuses (its
    queue's declaration or permissions) is set aside on its own, so it holds up no other.
    """
    pending = [r for r in rows if r.status == MessageStatus.QUEUED]
    if not pending:
        return 0
    failpoints.hit("before_publish")
    from wfproject.celery import app

    sent: list[str] = []
    while pending:
        try:
            with app.producer_or_acquire() as producer:
                while pending:
                    row = pending[0]
                    # The queue's full declaration (Celery takes a Queue; the stubs say str),
                    # also where its handler is not registered: a bare name would declare it
                    # without its dead-letter arguments, which RabbitMQ refuses once a worker
                    # has declared it with them.
                    queue: Any = deadletter.handler_queue(row.destination)
                    app.send_task(task_name(row.destination), args=[row.body],
                                  task_id=str(row.id), queue=queue, producer=producer)
                    sent.append(str(pending.pop(0).id))
        except ChannelError as refused:  # this message, not the broker: set it aside
            refuse(pending.pop(0), refused)
        except Exception as exc:  # unreachable, nacked (publisher confirms): never fatal here
            logger.warning("publish failed; %d message(s) left for the relay (incident %s): %r",
                           len(pending), pending[0].incident_id, exc, exc_info=True)
            break
    failpoints.hit("before_mark_sent")
    if mark_later:
        if not getattr(_unmarked, "ids", None):
            _unmarked.ids, _unmarked.since = [], time.monotonic()
        _unmarked.ids.extend(sent)
    else:
        _mark_sent(sent)
    return len(sent)


def refuse(row: MessageLog, error: Exception) -> None:
    """The broker refused this message: try it again later, with a growing delay, and after
    MAX_PUBLISH_FAILURES log it ERROR and end its incident with the reason."""
    failures = row.publish_failures + 1
    reason = (f"the broker refused message {row.pk} to queue {row.destination!r} "
              f"({failures} of {MAX_PUBLISH_FAILURES} tries): {error}")
    logger.warning("incident %s: %s", row.incident_id, reason)
    if failures < MAX_PUBLISH_FAILURES:
        # The relay takes it up again once `submitted` is RELAY_STALE_SECONDS old.
        retry_at = timezone.now() + timedelta(seconds=min(300, 5 * 2 ** failures)
                                              - conf.get("RELAY_STALE_SECONDS"))
        MessageLog.objects.filter(pk=row.pk, status=MessageStatus.QUEUED).update(
            publish_failures=failures, submitted=retry_at, comment=reason)
        return
    with transaction.atomic():
        if not MessageLog.objects.filter(pk=row.pk, status=MessageStatus.QUEUED).update(
                status=MessageStatus.ERROR, publish_failures=failures,
                completed=timezone.now(), comment=reason):
            return
        cleanup = lifecycle.apply_ending(
            StagedEnding(str(row.incident_id), IncidentStatus.ERROR, reason, by="broker"),
            originator="")
        cleanup_rows = log_rows([cleanup]) if cleanup else []
        insert(cleanup_rows)
        publish_on_commit(cleanup_rows)


def mark_published() -> None:
    """Mark SENT, inside the caller's commit, what this thread published with mark_later,
    once the oldest of it is MARK_SENT_AFTER_SECONDS old (or there are many)."""
    ids = getattr(_unmarked, "ids", None)
    if ids and (len(ids) >= MARK_SENT_MAX_IDS
                or time.monotonic() - _unmarked.since >= MARK_SENT_AFTER_SECONDS):
        _unmarked.ids = []
        # Rows another transaction holds (a claim, a kill) are skipped, not waited for: the
        # marks are advisory, and waiting for them inside a commit could deadlock.
        free = (MessageLog.objects.filter(pk__in=ids, status=MessageStatus.QUEUED)
                .select_for_update(skip_locked=True).values("pk"))
        MessageLog.objects.filter(pk__in=free).update(status=MessageStatus.SENT)


def _mark_sent(ids: list[str]) -> None:
    if ids:
        # A fast consumer may already have moved a row on to PROCESSING; leave that alone.
        MessageLog.objects.filter(pk__in=ids, status=MessageStatus.QUEUED).update(
            status=MessageStatus.SENT)


def publish_on_commit(rows: Sequence[MessageLog], *, mark_later: bool = False) -> None:
    """Publish the rows once the transaction that holds them commits (at once if none is
    open), so a message never reaches a worker before its log row does."""
    if rows:
        transaction.on_commit(lambda: publish(rows, mark_later=mark_later))


def commit_and_publish(staged: Sequence[StagedMessage]) -> list[MessageLog]:
    """Commit staged messages (in the caller's transaction, if any), then publish them."""
    rows = log_rows(staged)
    with transaction.atomic():
        insert(rows)
    publish_on_commit(rows)
    return rows


def relay_once(limit: int = 500) -> int:
    """Publish rows committed more than RELAY_STALE_SECONDS ago and still QUEUED."""
    now = timezone.now()
    stale_before = now - timedelta(seconds=conf.get("RELAY_STALE_SECONDS"))
    candidates = list(
        MessageLog.objects.filter(status=MessageStatus.QUEUED, submitted__lt=stale_before)
        .order_by("submitted")[:limit]
    )
    claimed = []
    for row in candidates:
        # Claim by moving `submitted` forward, so relays in other workers skip this row.
        if MessageLog.objects.filter(pk=row.pk, status=MessageStatus.QUEUED,
                                     submitted=row.submitted).update(submitted=now):
            claimed.append(row)
    if claimed:
        logger.info("relay: publishing %d message(s) committed but not published", len(claimed))
    return publish(claimed)
