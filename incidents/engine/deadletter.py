"""The dead-letter queue: messages no handler may take (not JSON, pickle, foreign, unknown
ids) are set aside in `_dead_letter`, with the reason, where operators can inspect them."""
from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass
from queue import Empty
from typing import Any

from kombu import Exchange, Queue

from incidents.engine import celery_app
from incidents.models import MAX_PRIORITY

logger = logging.getLogger(__name__)

DEAD_LETTER_QUEUE = "_dead_letter"
# Headers of a message the engine set aside itself: the broker's own dead-lettering (x-death)
# knows only "rejected".
REASON_HEADER, QUEUE_HEADER = "x-wf-reason", "x-wf-queue"
# RabbitMQ re-publishes a rejected message through the default exchange to this queue; the
# embedded broker does the same itself (fsbroker.Channel.basic_reject). Every handler queue
# is a priority queue: a queue declared before (without x-max-priority) must be migrated
# (engine/queue_migration.py), as a queue's arguments never change.
QUEUE_ARGUMENTS: dict[str, Any] = {"x-dead-letter-exchange": "",
                                   "x-dead-letter-routing-key": DEAD_LETTER_QUEUE,
                                   "x-max-priority": MAX_PRIORITY}


@functools.lru_cache(maxsize=1024)  # one per queue, so kombu declares each once per connection
def handler_queue(name: str) -> Queue:
    """A handler's queue: durable, its own direct exchange, dead-lettering into _dead_letter."""
    return Queue(name, Exchange(name, type="direct", durable=True), routing_key=name,
                 durable=True, queue_arguments=QUEUE_ARGUMENTS)


def dead_letter_queue() -> Queue:
    return Queue(DEAD_LETTER_QUEUE, exchange=Exchange(""), routing_key=DEAD_LETTER_QUEUE,
                 durable=True)


def declare(connection: Any) -> None:
    dead_letter_queue().bind(connection.default_channel).declare()


def set_aside(body: bytes | str, *, queue: str, reason: str, content_type: str | None,
              content_encoding: str | None, headers: dict[str, Any] | None) -> bool:
    """Publish a copy of a message to the dead-letter queue with the reason it was refused.
    False when that failed: the caller then rejects it, and the broker dead-letters it
    without the reason."""
    app = celery_app.get()
    try:
        with app.producer_or_acquire() as producer:  # confirmed, as Celery's own publishes
            producer.publish(
                body, exchange="", routing_key=DEAD_LETTER_QUEUE, declare=[dead_letter_queue()],
                content_type=content_type or "application/data",
                content_encoding=content_encoding or "binary", delivery_mode="persistent",
                headers={**(headers or {}), REASON_HEADER: reason[:1000], QUEUE_HEADER: queue})
    except Exception as exc:  # a broker error of any transport
        logger.warning("queue %s: could not set a message aside with its reason (%r); "
                       "rejecting it instead", queue, exc)
        return False
    return True


def reject(message: Any, queue: str, reason: str) -> None:
    """Move a received kombu message to the dead-letter queue with its reason."""
    # kombu has decompressed the body already: the copy goes uncompressed.
    headers = {k: v for k, v in (message.headers or {}).items() if k != "compression"}
    if set_aside(message.body, queue=queue, reason=reason, content_type=message.content_type,
                 content_encoding=message.content_encoding, headers=headers):
        message.ack()  # after the copy is confirmed: a crash between leaves two, never none
    else:
        message.reject(requeue=False)


def count() -> int:
    """How many dead letters wait in the queue."""
    app = celery_app.get()
    with app.connection_for_write() as connection:
        queue = dead_letter_queue().bind(connection.default_channel)
        declared: Any = queue.queue_declare()  # made if missing; (name, messages, consumers)
        return int(declared.message_count)


@dataclass
class DeadLetter:
    queue: str  # where it was rejected from
    reason: str
    content_type: str
    task: str
    body: str  # the first 500 characters of the body as text


def _describe(message: Any) -> DeadLetter:
    headers = message.headers or {}
    deaths = headers.get("x-death") or [{}]
    body = message.body
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else (
        body if isinstance(body, str) else json.dumps(body, default=repr))
    return DeadLetter(
        queue=str(headers.get(QUEUE_HEADER) or headers.get("x-first-death-queue")
                  or deaths[0].get("queue", "?")),
        reason=str(headers.get(REASON_HEADER) or headers.get("x-first-death-reason")
                   or deaths[0].get("reason", "?")),
        content_type=str(message.content_type), task=str(headers.get("task", "")),
        body=text[:500])


def inspect(limit: int = 100, *, purge: bool = False) -> list[DeadLetter]:
    """Up to `limit` dead letters, oldest first. They stay queued unless purge=True."""
    app = celery_app.get()
    found: list[DeadLetter] = []
    with app.connection_for_write() as connection:
        declare(connection)
        queue = dead_letter_queue().bind(connection.default_channel)
        taken = []
        while len(found) < limit:
            try:
                message = queue.get(no_ack=False, accept=["json", "text/plain",
                                                          "application/data"])
            except Empty:
                break
            if message is None:
                break
            found.append(_describe(message))
            taken.append(message)
        for message in taken:
            message.ack() if purge else message.requeue()
    return found
