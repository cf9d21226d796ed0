"""One Celery task per handler queue, named workflow.<queue>; each calls dispatch.deliver()."""
from __future__ import annotations

import logging
from typing import Any

from celery.exceptions import Reject

from incidents import conf
from incidents.engine import deadletter, dispatch, locks, outbox
from incidents.exceptions import Deferred

logger = logging.getLogger(__name__)


def _retry_later(task: Any, countdown: float, **kwargs: Any) -> Exception:
    """Send the message back to its queue to be handled after `countdown` seconds."""
    try:
        return task.retry(countdown=countdown, max_retries=None, **kwargs)  # raises Retry
    except Reject as failed:
        # Celery could not publish the retry and would drop the message: requeue it instead.
        return Reject(str(failed), requeue=True)


def bind_queue(queue: str, time_limit: float | None = None) -> None:
    """Create the queue's task and add the queue to those a worker consumes by default."""
    from wfproject.celery import app

    name = outbox.task_name(queue)
    if name in app.tasks:
        return

    def deliver(self: Any, message: Any, retake: bool = False) -> str:
        delivery = self.request.delivery_info or {}
        try:
            outcome = dispatch.deliver(queue, message, retries=self.request.retries, retake=retake,
                                       redelivered=bool(delivery.get("redelivered")))
        except Deferred as wait:
            raise _retry_later(self, wait.delay) from None
        except dispatch.INFRASTRUCTURE_ERRORS as exc:
            # The database or the lock store is restarting or out of reach; the handler's
            # effects were not committed. The message may be claimed, so the retry takes it over.
            logger.warning("queue %s: database or lock store unavailable (%s); message %s "
                           "retried", queue, exc, self.request.id)
            raise _retry_later(self, locks.retry_delay(self.request.retries + 4),
                               kwargs={"retake": True}) from exc
        if outcome.result is dispatch.Result.REJECTED:
            raise Reject(f"not a message of ours: {outcome.error or 'unknown message'}",
                         requeue=False)  # dead-lettered into _dead_letter
        return outcome.result.value

    deliver.__name__ = deliver.__qualname__ = f"deliver_{queue}"
    soft_limit = time_limit or float(conf.get("HANDLER_TIME_LIMIT_SECONDS")) or None
    hard_limit = soft_limit + float(conf.get("HARD_TIME_LIMIT_GRACE_SECONDS")) if soft_limit else None
    app.task(name=name, bind=True, shared=False, lazy=False, acks_late=True,
             ignore_result=not conf.get("STORE_TASK_RESULTS"), max_retries=None,
             soft_time_limit=soft_limit, time_limit=hard_limit,
             typing=False)(deliver)  # type: ignore[call-overload]
    # The declaration send_task() finds by name, also consumed by a worker without -Q.
    app.amqp.queues.select_add(deadletter.handler_queue(queue))
