"""The dead-letter queue: messages no handler may take (not JSON, pickle, foreign, unknown
ids) are rejected into `_dead_letter`, where operators can inspect them."""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from queue import Empty
from typing import Any

from kombu import Exchange, Queue

from incidents.engine import celery_app

DEAD_LETTER_QUEUE = "_dead_letter"
# RabbitMQ re-publishes a rejected message through the default exchange to this queue; the
# embedded broker does the same itself (fsbroker.Channel.basic_reject).
QUEUE_ARGUMENTS = {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": DEAD_LETTER_QUEUE}


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
        queue=str(headers.get("x-first-death-queue") or deaths[0].get("queue", "?")),
        reason=str(headers.get("x-first-death-reason") or deaths[0].get("reason", "?")),
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
