"""Which queues some worker consumes right now: RabbitMQ counts its consumers; on other
brokers (the embedded one) the workers are asked, once, with Celery's remote control."""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from incidents.engine import celery_app, deadletter

logger = logging.getLogger(__name__)

#: How long to wait for workers' replies: every worker that runs answers within it, and a
#: diagnosis waits for it in full (Celery cannot know how many workers should answer).
INSPECT_TIMEOUT_SECONDS = 1.0


@dataclass(frozen=True)
class QueueConsumers:
    """Who consumes one queue, as far as could be learnt."""

    known: bool
    count: int = 0  # consumers (RabbitMQ), or workers that said they consume it
    workers: tuple[str, ...] = ()  # their node names, when the workers answered
    how: str = ""  # where the answer comes from, or why it is unknown
    broker_messages: int | None = None  # ready in the queue (RabbitMQ only)


def ask(queues: Iterable[str], *, timeout: float = INSPECT_TIMEOUT_SECONDS) -> dict[str, QueueConsumers]:
    """Consumers of each queue. Never raises: a broker that cannot be asked gives
    `known=False` with the reason."""
    names = sorted(set(queues))
    if not names:
        return {}
    app = celery_app.get()
    try:
        with app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1)
            if connection.transport.driver_type == "amqp":
                return {name: _from_broker(connection, name) for name in names}
            return _from_workers(app, connection, names, timeout)
    except Exception as exc:  # any transport's error: the answer is "unknown", not a failure
        logger.warning("could not ask who consumes %s", names, exc_info=True)
        unknown = QueueConsumers(False, how=f"unknown: could not ask the broker ({exc!r:.200})")
        return dict.fromkeys(names, unknown)


def _from_broker(connection: Any, name: str) -> QueueConsumers:
    """A passive declare: RabbitMQ checks that the queue exists (not its arguments) and
    answers with its consumer and message counts; it changes nothing."""
    channel = connection.channel()
    try:
        queue = deadletter.handler_queue(name).bind(channel)
        declared: Any = queue.queue_declare(passive=True)  # (name, messages, consumers)
    except connection.channel_errors:  # NOT_FOUND: never declared, so nobody consumes it
        return QueueConsumers(True, 0, how="RabbitMQ: the queue does not exist", broker_messages=0)
    finally:
        with contextlib.suppress(Exception):  # a channel NOT_FOUND closed is closed already
            channel.close()
    count = int(declared.consumer_count)
    return QueueConsumers(True, count, how=f"RabbitMQ: {count} consumer(s)",
                          broker_messages=int(declared.message_count))


def _from_workers(app: Any, connection: Any, names: list[str], timeout: float) -> dict[str, QueueConsumers]:
    replies = app.control.inspect(timeout=timeout, connection=connection).active_queues() or {}
    if not replies:
        how = (f"no worker answered within {timeout:g} s: none is running, or they run "
               "without remote control")
        return dict.fromkeys(names, QueueConsumers(True, 0, how=how))
    consumed: dict[str, list[str]] = {}
    for node, queues in replies.items():
        for queue in queues or []:
            consumed.setdefault(str(queue.get("name")), []).append(str(node))
    answered = f"{len(replies)} worker(s) answered within {timeout:g} s"
    return {name: QueueConsumers(True, len(consumed.get(name, [])),
                                 tuple(sorted(consumed.get(name, []))), answered)
            for name in names}
