"""One Celery task per handler queue, named workflow.<queue>; each calls dispatch.deliver()."""
from __future__ import annotations

import json
import logging
import re
import time
from typing import Any

from celery.exceptions import Reject, Retry
from django.db import connections

from incidents import conf
from incidents.engine import celery_app, context, deadletter, dispatch, locks, registry, runs
from incidents.exceptions import Deferred

logger = logging.getLogger(__name__)

#: Retries after which a message the engine keeps failing on is logged ERROR: patient with
#: outages (database or lock store away, about an hour), quick with unexpected errors.
MAX_OUTAGE_RETRIES = 720
MAX_ERROR_RETRIES = 30


def _retry_later(task: Any, countdown: float, **kwargs: Any) -> Exception:
    """Send the message back to its queue to be handled after `countdown` seconds."""
    try:
        return task.retry(countdown=countdown, max_retries=None, **kwargs)  # raises Retry
    except Reject as failed:
        # Celery could not publish the retry and would drop the message: requeue it instead,
        # after a pause so a broker that takes no publishes is not asked again at once.
        time.sleep(1)
        return Reject(str(failed), requeue=True)


def _set_aside(task: Any, queue: str, reason: str) -> None:
    """Dead-letter the message being handled, with the reason (dispatch logged it already).
    The pool process has its arguments, not its bytes: the copy is the same message built
    again. If that fails, a Reject has the broker dead-letter the original."""
    request = task.request
    body = json.dumps([list(request.args or ()), request.kwargs or {},
                       {"callbacks": None, "errbacks": None, "chain": None, "chord": None}])
    if not deadletter.set_aside(body, queue=queue, reason=reason,
                                content_type="application/json", content_encoding="utf-8",
                                headers={"id": request.id, "task": task.name}):
        raise Reject(reason, requeue=False)


def bind_queue(queue: str, time_limit: float | None = None) -> None:
    """Create the queue's task and add the queue to those a worker consumes by default."""
    app = celery_app.get()
    name = registry.task_name(queue)
    if name in app.tasks:
        return

    def deliver(self: Any, message: Any, retake: bool = False, errors: int = 0,
                since: float | None = None, retried: int = 0, notes: str = "") -> str:
        with context.delivering(queue, message):  # log lines name the message
            return _deliver(self, message, retake, errors, since or time.time(), retried, notes)

    def _deliver(self: Any, message: Any, retake: bool, errors: int, since: float,
                 retried: int, notes: str) -> str:
        delivery = self.request.delivery_info or {}
        handler_retries: dict[str, Any] = {"retried": retried, "notes": notes}  # kept by retries
        try:
            outcome = dispatch.deliver(queue, message, retries=self.request.retries, retake=retake,
                                       redelivered=bool(delivery.get("redelivered")),
                                       waiting_since=since, retried=retried, notes=notes)
        except runs.RetryScheduled as failed:  # the handler's retry: its wait starts afresh
            raise _retry_later(self, failed.delay, kwargs={
                "retried": failed.retried, "notes": failed.notes}) from None
        except Deferred as wait:
            # `since` travels with the retries: the lock wait is measured from the first try.
            raise _retry_later(self, wait.delay, kwargs={"errors": errors, "since": since,
                                                         **handler_retries}) from None
        except (Retry, Reject):
            raise
        except Exception as exc:  # the engine could not finish: never drop the message
            connections.close_all()  # connections are reused across tasks: start afresh
            expected = isinstance(exc, runs.INFRASTRUCTURE_ERRORS)
            if errors >= (MAX_OUTAGE_RETRIES if expected else MAX_ERROR_RETRIES):
                dispatch.give_up_after_errors(queue, message, exc)
                return dispatch.Result.ERROR.value
            logger.warning("queue %s: message %s retried after %s: %r", queue, self.request.id,
                           "an outage" if expected else "an engine error", exc,
                           exc_info=not expected)
            # The message may be claimed already, so the retry takes the claim over.
            raise _retry_later(self, locks.retry_delay(errors + 4),
                               kwargs={"retake": True, "errors": errors + 1,
                                       **handler_retries}) from exc
        if outcome.result is dispatch.Result.REJECTED:
            _set_aside(self, queue, f"not a message of ours: {outcome.error or 'unknown message'}")
        return outcome.result.value

    # Celery compiles a signature check from the function's name: keep it an identifier
    # (queue names may hold . : -).
    deliver.__name__ = deliver.__qualname__ = "deliver_" + re.sub(r"\W", "_", queue)
    soft_limit = time_limit or float(conf.get("HANDLER_TIME_LIMIT_SECONDS")) or None
    hard_limit = soft_limit + float(conf.get("HARD_TIME_LIMIT_GRACE_SECONDS")) if soft_limit else None
    app.task(name=name, bind=True, shared=False, lazy=False, acks_late=True,
             ignore_result=True, max_retries=None,  # engine/results.py stores results
             soft_time_limit=soft_limit, time_limit=hard_limit,
             typing=False)(deliver)  # type: ignore[call-overload]
    # The declaration send_task() finds by name, also consumed by a worker without -Q.
    app.amqp.queues.select_add(deadletter.handler_queue(queue))
