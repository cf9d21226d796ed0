"""The worker's consumer: a message Celery cannot decode (not JSON, pickle) is rejected into
the dead-letter queue instead of being acknowledged and lost; on the embedded broker, a
shutdown does not wait for the current drain to time out."""
from __future__ import annotations

import logging
from typing import Any

from celery.worker.consumer import Consumer as CeleryConsumer

logger = logging.getLogger(__name__)


class Consumer(CeleryConsumer):
    def on_decode_error(self, message: Any, exc: Exception) -> None:
        logger.error("queue %s: rejected an undecodable message (content type %r): %s",
                     (message.delivery_info or {}).get("routing_key", "?"),
                     message.content_type, exc)
        message.reject(requeue=False)

    def connect(self) -> Any:
        connection = super().connect()
        if hasattr(connection.transport, "worker_consumer"):  # the embedded broker
            connection.transport.worker_consumer = True
        return connection
