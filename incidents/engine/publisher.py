"""Publishing the outbox's messages, without publisher confirms.

A confirm per publish is a round trip, and on RabbitMQ a channel in confirm mode cost a hop
more than a millisecond even when nobody waited for the confirms (measured: docs/BENCHMARKS.md).
The outbox does not need them: the log knows what was committed and not yet handled, and the
relay publishes again a message the broker lost (engine/outbox.py, relay_once). So each thread
publishes on a connection of its own, without confirms (Celery's own publishes, such as task
retries, keep the confirms celeryconfig asks for), and what it published is marked SENT in a
batch, by the thread's next commit a second or more later.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from incidents.engine import celery_app

logger = logging.getLogger(__name__)


class Publisher:
    """One thread's producer, and the MessageIDs it published that are not yet marked SENT."""

    def __init__(self) -> None:
        self._connection: Any = None
        self._producer: Any = None
        self._sent: list[str] = []
        self._oldest: float | None = None  # when the oldest of _sent was published

    @contextmanager
    def producer(self) -> Iterator[Any]:
        """The producer to publish with; on a connection error it is dropped, and the next
        publish starts afresh."""
        if self._producer is None:
            self._open()
        try:
            yield self._producer
        except Exception:
            self.close()
            raise

    def published(self, message_id: str) -> None:
        if self._oldest is None:
            self._oldest = time.monotonic()
        self._sent.append(message_id)

    def marks_due(self, after: float, many: int) -> bool:
        """Whether the oldest published id not yet taken is `after` seconds old, or there
        are `many` of them."""
        return self._oldest is not None and (
            len(self._sent) >= many or time.monotonic() - self._oldest >= after)

    def take_published(self) -> list[str]:
        """The MessageIDs published since the last call."""
        sent, self._sent, self._oldest = self._sent, [], None
        return sent

    def settle(self) -> None:
        """Return once the broker has routed what this thread published: a synchronous
        request on the same channel is answered after the publishes before it."""
        channel = getattr(self._producer, "channel", None)
        if channel is not None and hasattr(channel, "basic_qos"):
            channel.basic_qos(0, 0, False)

    def close(self) -> None:
        connection, self._connection, self._producer = self._connection, None, None
        if connection is not None:
            try:
                connection.release()
            except Exception:  # already broken: nothing to give back
                logger.debug("closing the outbox connection failed", exc_info=True)

    def _open(self) -> None:
        app = celery_app.get()
        # No heartbeats: an idle outbox connection must not be closed under it.
        self._connection = app.connection_for_write(
            heartbeat=0, transport_options={"confirm_publish": False})
        self._producer = app.amqp.Producer(self._connection.default_channel)


_threads = threading.local()


def for_this_thread() -> Publisher:
    """This thread's publisher (a new one after a fork: connections are not shared)."""
    if getattr(_threads, "pid", None) != os.getpid():
        _threads.publisher, _threads.pid = Publisher(), os.getpid()
    publisher: Publisher = _threads.publisher
    return publisher
