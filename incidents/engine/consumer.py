"""The worker's consumer: a message Celery cannot decode (not JSON, pickle), or that must not
be decoded at all (engine/screening.py), is rejected into the dead-letter queue instead of
being acknowledged and lost or killing the worker; on the embedded broker, a shutdown does
not wait for the current drain to time out."""
from __future__ import annotations

import logging
from typing import Any

from celery.worker.consumer import Consumer as CeleryConsumer

from incidents.engine import screening

logger = logging.getLogger(__name__)


def _queue_of(message: Any) -> str:
    return str((message.delivery_info or {}).get("routing_key", "?"))


class Consumer(CeleryConsumer):
    def on_decode_error(self, message: Any, exc: Exception) -> None:
        logger.error("queue %s: rejected an undecodable message (content type %r): %s",
                     _queue_of(message), message.content_type, exc)
        message.reject(requeue=False)

    def create_task_handler(self, *args: Any, **kwargs: Any) -> Any:
        handle = super().create_task_handler(*args, **kwargs)

        def on_task_received(message: Any) -> Any:
            why = screening.refusal(message.body, message.headers)
            if why is None:
                return handle(message)
            logger.error("queue %s: rejected message %s: %s", _queue_of(message),
                         (message.headers or {}).get("id", "?"), why)
            message.reject(requeue=False)  # dead-lettered into _dead_letter
            return None

        return on_task_received

    def connect(self) -> Any:
        connection = super().connect()
        if hasattr(connection.transport, "worker_consumer"):  # the embedded broker
            connection.transport.worker_consumer = True
        return connection
