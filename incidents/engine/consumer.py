"""The worker's consumer: a message Celery cannot decode (not JSON, pickle), that is no Celery
task, or that must not be decoded at all (engine/screening.py), is set aside in the dead-letter
queue with the reason instead of being acknowledged and lost or killing the worker; on the
embedded broker, a shutdown does not wait for the current drain to time out."""
from __future__ import annotations

import logging
from typing import Any

from celery.worker.consumer import Consumer as CeleryConsumer

from incidents.engine import deadletter, queue_migration, screening

logger = logging.getLogger(__name__)


def _queue_of(message: Any) -> str:
    return str((message.delivery_info or {}).get("routing_key", "?"))


class Consumer(CeleryConsumer):
    def on_decode_error(self, message: Any, exc: Exception) -> None:
        self._set_aside(message, f"undecodable ({message.content_type}): {exc}")

    def on_unknown_message(self, body: Any, message: Any) -> None:
        self._set_aside(message, "not a Celery task message (no 'task' header)")

    def on_invalid_task(self, body: Any, message: Any, exc: Exception) -> None:
        self._set_aside(message, f"invalid task message: {exc}")

    def create_task_handler(self, *args: Any, **kwargs: Any) -> Any:
        handle = super().create_task_handler(*args, **kwargs)

        def on_task_received(message: Any) -> Any:
            why = screening.refusal(message.body, message.headers)
            if why is None:
                return handle(message)
            self._set_aside(message, why)
            return None

        return on_task_received

    @staticmethod
    def _set_aside(message: Any, reason: str) -> None:
        queue = _queue_of(message)
        logger.error("queue %s: message %s set aside in %s: %s", queue,
                     (message.headers or {}).get("id", "?"), deadletter.DEAD_LETTER_QUEUE, reason)
        deadletter.reject(message, queue, reason)

    def connect(self) -> Any:
        connection = super().connect()
        if hasattr(connection.transport, "worker_consumer"):  # the embedded broker
            connection.transport.worker_consumer = True
        # Before Celery declares its queues: a queue an older version declared would stop
        # the worker with a bare PRECONDITION_FAILED; say which command fixes it instead.
        handler_queues = set(queue_migration.handler_queue_names())
        queue_migration.refuse_outdated(connection, sorted(
            name for name in self.app.amqp.queues.consume_from if name in handler_queues))
        return connection
