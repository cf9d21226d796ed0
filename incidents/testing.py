"""Helpers for handler authors' tests: run queued messages in this process until idle."""
from __future__ import annotations

from queue import Empty

from incidents.engine import celery_app, deadletter, dispatch, publisher, registry
from incidents.engine.runs import RetryScheduled
from incidents.exceptions import Deferred, WorkflowError


class HandlerFailed(WorkflowError):
    """A handler raised while run_until_idle() was running it."""


def purge_queues(queues: list[str] | None = None) -> int:
    """Drop every message waiting in the given (default: all registered) queues."""
    app = celery_app.get()
    purged = 0
    with app.connection_for_write() as conn:
        for name in queues or registry.registered_queues():
            queue = app.amqp.queues[name].bind(conn.default_channel)
            queue.declare()
            purged += queue.purge() or 0
    return purged


def run_until_idle(*, max_messages: int = 100_000, raise_on_error: bool = True) -> int:
    """Handle queued messages one at a time in this process until every registered queue
    is empty; return how many deliveries were handled.

    The first handler failure is re-raised as HandlerFailed (chained to the original)
    unless raise_on_error is False. A deferred message (busy lock, waiting cleanup) goes to
    the back of its queue.
    """
    app = celery_app.get()
    handled = idle_passes = 0
    with app.connection_for_write() as conn:
        queues = {name: conn.SimpleQueue(app.amqp.queues[name])
                  for name in registry.registered_queues()}
        try:
            while handled < max_messages:
                progressed = False
                for name, queue in queues.items():
                    try:
                        message = queue.get(block=False)
                    except Empty:
                        continue
                    args, kwargs, _embed = message.payload
                    retried = {key: kwargs[key] for key in ("retried", "notes") if key in kwargs}
                    retries = int(message.headers.get("retries") or 0)
                    message.ack()
                    handled += 1
                    try:
                        outcome = dispatch.deliver(name, args[0], retries=retries, **retried)
                    except Deferred as wait:  # a handler's retry runs at once here, no wait
                        if isinstance(wait, RetryScheduled):
                            retried = {"retried": wait.retried, "notes": wait.notes}
                        app.send_task(registry.task_name(name), args=args, kwargs=retried,
                                      queue=deadletter.handler_queue(name),  # type: ignore[arg-type]
                                      priority=message.properties.get("priority"),
                                      task_id=message.headers.get("id"), retries=retries + 1)
                        continue
                    progressed = True
                    if outcome.result is dispatch.Result.ERROR and raise_on_error:
                        raise HandlerFailed(f"handler on queue {name!r} failed: "
                                            f"{outcome.error!r}", queue=name) from outcome.error
                idle_passes = 0 if progressed else idle_passes + 1
                publisher.for_this_thread().settle()  # what was sent is in its queue
                if idle_passes and all(q.qsize() == 0 for q in queues.values()):
                    return handled
                if idle_passes > 10_000:
                    raise WorkflowError("run_until_idle(): messages keep being deferred; "
                                        "a lock is held or a cleanup waits for ever")
        finally:
            for queue in queues.values():
                queue.close()
    raise WorkflowError(f"run_until_idle(): still busy after {max_messages} messages")


def queued_count(queue: str) -> int:
    """How many messages wait in `queue` on the broker."""
    app = celery_app.get()
    with app.connection_for_write() as conn:
        declared = app.amqp.queues[queue].bind(conn.default_channel).queue_declare()
        return int(declared.message_count)
