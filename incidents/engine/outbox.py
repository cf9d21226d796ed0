"""The outbox: messages become log rows in the sender's transaction, then get published.

A row is QUEUED when committed and SENT once published. Rows left QUEUED (broker down,
process killed between commit and publish) are published by the relay, so a committed
message is never lost; a message published twice is handled once (dispatch). Publishes do
not wait for the broker's confirm (engine/publisher.py): a SENT row the broker lost (it
crashed before writing it, or refused it) is published again by the relay once its queue
has nothing waiting in it, since then the message is not waiting there either.

A handler's messages are not marked SENT one by one, in a transaction each: the thread marks
what it published, in one statement, in a commit at least MARK_SENT_AFTER_SECONDS later,
when most of them are being handled already (and no longer QUEUED). Until then they look
unpublished, which costs at most a second copy from the relay if one waits in the broker for
RELAY_STALE_SECONDS while its thread commits nothing; it is handled once.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any

from amqp.exceptions import ChannelError  # also what kombu's virtual transports raise
from django.db import transaction
from django.utils import timezone

from incidents import conf
from incidents.engine import (
    celery_app,
    deadletter,
    failpoints,
    ledger,
    lifecycle,
    publisher,
    queue_migration,
    registry,
)
from incidents.engine.context import StagedEnding, StagedMessage
from incidents.models import (
    WAITING_STATUSES,
    Incident,
    IncidentPriority,
    IncidentStatus,
    MessageLog,
    MessageStatus,
)

logger = logging.getLogger(__name__)

MARK_SENT_AFTER_SECONDS = 1.0
MARK_SENT_MAX_IDS = 1000
#: Refusals by the broker after which a message is given up (about 2.5 minutes of tries).
MAX_PUBLISH_FAILURES = 5


def log_rows(staged: Iterable[StagedMessage]) -> list[MessageLog]:
    """The QUEUED log rows of staged messages (not yet inserted: ledger.insert), each with
    its incident's priority."""
    now = timezone.now()
    staged = list(staged)
    priorities = _priorities({m.incident_id for m in staged if m.priority is None})
    return [
        MessageLog(
            id=m.id, incident_id=m.incident_id, originator=m.originator, destination=m.queue,
            src_tag=m.src_tag, dest_tag=m.dest_tag, status=MessageStatus.QUEUED,
            # A timer's row is taken by the relay only once due (engine/timers.py).
            submitted=m.not_before or now, body=m.body, not_before=m.not_before,
            priority=m.priority if m.priority is not None else priorities.get(
                m.incident_id, IncidentPriority.NORMAL),
        )
        for m in staged
    ]


def _priorities(incident_ids: set[str]) -> dict[str, int]:
    """The incidents' priorities, in one query (none if there is nothing to read)."""
    if not incident_ids:
        return {}
    return {str(pk): priority for pk, priority in
            Incident.objects.filter(pk__in=incident_ids).values_list("pk", "priority")}


def publish(rows: Sequence[MessageLog], *, mark_later: bool = False) -> int:
    """Publish committed QUEUED rows and mark them SENT (`mark_later`: in this thread's next
    mark_published() call); return how many went out.

    Must run after the commit that inserted them. If the broker is unreachable the rows
    stay QUEUED for the relay and the caller carries on. A row the broker refuses (its
    queue's declaration or permissions) is set aside on its own, so it holds up no other.
    """
    now = timezone.now()
    # Timers not yet due wait in the log for the timer loop (engine/timers.py).
    pending = [r for r in rows if r.status in WAITING_STATUSES
               and (r.not_before is None or r.not_before <= now)]
    if not pending:
        return 0
    failpoints.hit("before_publish")
    app = celery_app.get()
    outbox_publisher = publisher.for_this_thread()
    sent, reconnected = 0, False
    while pending:
        try:
            with outbox_publisher.producer() as producer:
                while pending:
                    row = pending[0]
                    # The queue's full declaration (Celery takes a Queue; the stubs say str),
                    # also where its handler is not registered: a bare name would declare it
                    # without its dead-letter arguments, which RabbitMQ refuses once a worker
                    # has declared it with them.
                    queue: Any = deadletter.handler_queue(row.destination)
                    # argsrepr (what Flower shows) by the C repr: Celery's saferepr walks
                    # the body in Python, a tenth of a publish.
                    app.send_task(registry.task_name(row.destination), args=[row.body],
                                  task_id=str(row.id), queue=queue, producer=producer,
                                  retry=False, argsrepr=f"[{row.body!r:.1024}]",
                                  kwargsrepr="{}", priority=row.priority)
                    outbox_publisher.published(str(pending.pop(0).id))
                    sent += 1
        except ChannelError as refused:  # this message, not the broker: set it aside
            refuse(pending.pop(0), refused)
        except Exception as exc:  # unreachable: never fatal here
            if not reconnected:  # e.g. the broker restarted since: once on a new connection
                reconnected = True
                continue
            logger.warning("publish failed; %d message(s) left for the relay (incident %s): %r",
                           len(pending), pending[0].incident_id, exc, exc_info=True)
            break
    failpoints.hit("before_mark_sent")
    if not mark_later:
        ledger.mark_sent(outbox_publisher.take_published())
    return sent


def refuse(row: MessageLog, error: Exception) -> None:
    """The broker refused this message: try it again later, with a growing delay, and after
    MAX_PUBLISH_FAILURES log it ERROR and end its incident with the reason."""
    failures = row.publish_failures + 1
    reason = (f"the broker refused message {row.pk} to queue {row.destination!r} "
              f"({failures} of {MAX_PUBLISH_FAILURES} tries): {error}"
              f"{queue_migration.hint_for(error)}")
    logger.warning("incident %s: %s", row.incident_id, reason)
    if failures < MAX_PUBLISH_FAILURES:
        # The relay takes it up again once `submitted` is RELAY_STALE_SECONDS old.
        retry_at = timezone.now() + timedelta(seconds=min(300, 5 * 2 ** failures)
                                              - conf.get("RELAY_STALE_SECONDS"))
        ledger.refused(row, failures, reason, retry_at=retry_at)
        return
    with transaction.atomic():
        if ledger.refused(row, failures, reason, retry_at=None):
            publish_on_commit(end_incident(
                StagedEnding(str(row.incident_id), IncidentStatus.ERROR, reason, by="broker"),
                originator=""))


def end_incident(ending: StagedEnding, *, originator: str) -> list[MessageLog]:
    """End an incident inside the caller's transaction and log its cleanup message; return
    the rows to publish once that transaction commits."""
    cleanup = lifecycle.apply_ending(ending, originator=originator)
    rows = log_rows([*ending.releases, cleanup]) if cleanup else []
    ledger.insert(rows)
    return rows


def mark_published() -> None:
    """Mark SENT, in the caller's commit (if any), what this thread published with
    mark_later, once the oldest of it is MARK_SENT_AFTER_SECONDS old (or there are many)."""
    outbox_publisher = publisher.for_this_thread()
    if outbox_publisher.marks_due(MARK_SENT_AFTER_SECONDS, MARK_SENT_MAX_IDS):
        # Waiting inside a commit for rows another transaction holds could deadlock; a
        # statement on its own holds nothing and may wait.
        ledger.mark_sent(outbox_publisher.take_published(),
                         skip_locked=transaction.get_connection().in_atomic_block)


def publish_on_commit(rows: Sequence[MessageLog], *, mark_later: bool = False) -> None:
    """Publish the rows once the transaction that holds them commits (at once if none is
    open), so a message never reaches a worker before its log row does."""
    if rows:
        transaction.on_commit(lambda: publish(rows, mark_later=mark_later))


def commit_and_publish(staged: Sequence[StagedMessage]) -> list[MessageLog]:
    """Commit staged messages (in the caller's transaction, if any), then publish them."""
    rows = log_rows(staged)
    with transaction.atomic():
        ledger.insert(rows)
    publish_on_commit(rows)
    return rows


def relay_once(limit: int = 500) -> int:
    """Publish what was committed more than RELAY_STALE_SECONDS ago and is not yet handled:
    QUEUED rows (never published), and SENT rows whose queue has nothing waiting (the broker
    lost them: had they been in the queue, they would be there or handled by now)."""
    now = timezone.now()
    stale = MessageLog.objects.filter(
        submitted__lt=now - timedelta(seconds=conf.get("RELAY_STALE_SECONDS"))).exclude(
        not_before__gt=now)  # a timer is never published early (a resumed one may be stale)
    unpublished = list(stale.filter(status=MessageStatus.QUEUED).order_by("submitted")[:limit])
    published = list(stale.filter(status=MessageStatus.SENT).order_by("submitted")[:limit])
    empty = _queues_with_nothing_waiting({row.destination for row in published})
    lost = [row for row in published if row.destination in empty]
    claimed = [row for row in unpublished + lost if ledger.take_for_relay(row, now)]
    if claimed:
        logger.info("relay: publishing %d message(s) committed but not published and %d the "
                    "broker lost", sum(r.status == MessageStatus.QUEUED for r in claimed),
                    sum(r.status == MessageStatus.SENT for r in claimed))
    return publish(claimed)


def _queues_with_nothing_waiting(names: set[str]) -> set[str]:
    if not names:
        return set()
    app = celery_app.get()
    empty = set()
    with app.connection_for_write() as connection:
        channel = connection.default_channel
        for name in sorted(names):
            # Declared as the workers declare it; created if it is missing (then it is empty).
            # (kombu's stubs type the declare-ok as a str)
            declared: Any = deadletter.handler_queue(name).bind(channel).queue_declare()
            if declared.message_count == 0:
                empty.add(name)
    return empty
