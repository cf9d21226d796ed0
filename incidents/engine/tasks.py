"""One Celery task per handler queue, named workflow.<queue>; each calls dispatch.deliver()."""
from __future__ import annotations

import logging
from typing import Any

from django.db import InterfaceError, OperationalError

from incidents.engine import dispatch, locks, outbox
from incidents.exceptions import Deferred

logger = logging.getLogger(__name__)


def bind_queue(queue: str) -> None:
    """Create the queue's task and add the queue to those a worker consumes by default."""
    from wfproject.celery import app

    name = outbox.task_name(queue)
    if name in app.tasks:
        return

    def deliver(self: Any, message: Any) -> str:
        delivery = self.request.delivery_info or {}
        try:
            outcome = dispatch.deliver(queue, message, redelivered=bool(delivery.get("redelivered")),
                                       retries=self.request.retries)
        except Deferred as wait:
            raise self.retry(countdown=wait.delay, max_retries=None) from None
        except (OperationalError, InterfaceError) as exc:
            # The database is restarting or out of reach: nothing was committed; try later.
            logger.warning("queue %s: database unavailable (%s); message %s retried",
                           queue, exc, self.request.id)
            raise self.retry(countdown=locks.retry_delay(self.request.retries + 4),
                             max_retries=None) from exc
        return outcome.result.value

    deliver.__name__ = deliver.__qualname__ = f"deliver_{queue}"
    app.task(name=name, bind=True, shared=False, lazy=False, acks_late=True,
             ignore_result=True, max_retries=None, typing=False)(deliver)
    # The same declaration send_task() uses (durable, own direct exchange), added to the
    # queues a worker consumes when started without -Q.
    queues = app.amqp.queues
    queues.select_add(queues.new_missing(queue))
