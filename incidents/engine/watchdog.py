"""The pool watchdog, a worker step: a worker whose pool takes no job while it holds messages
and has idle processes is wedged (every process alive, nothing runs, nobody told). It says
so, kills its pool and exits, so that its supervisor restarts it and the broker gives its
messages to another worker (RabbitMQ on the closed connection, the embedded broker by its
recovery of a dead holder's messages)."""
from __future__ import annotations

import logging
import os
import signal
import threading
import time
from typing import Any

from celery import bootsteps
from celery.worker import state

logger = logging.getLogger(__name__)

EXIT_WEDGED = 70  # EX_SOFTWARE: supervisors restart on it (Restart=on-failure, compose)


class PoolWatchdogStep(bootsteps.StartStopStep):
    """Checks every few seconds for messages given to the pool that no process took."""

    requires = ("celery.worker.components:Pool",)

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, worker: Any) -> None:
        from incidents import conf

        limit = float(conf.get("WEDGED_POOL_SECONDS"))
        if limit > 0:
            self._thread = threading.Thread(target=self._watch, args=(worker, limit),
                                            name="workflow-pool-watchdog", daemon=True)
            self._thread.start()

    def stop(self, worker: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _watch(self, worker: Any, limit: float) -> None:
        waiting_since: dict[str, float] = {}  # task id -> when first seen waiting
        while not self._stop.wait(min(limit / 3, 5.0)):
            now = time.monotonic()
            active = list(state.active_requests)
            waiting = {request.id: request for request in list(state.reserved_requests)
                       if request not in active}
            waiting_since = {task_id: waiting_since.get(task_id, now) for task_id in waiting}
            stuck = [task_id for task_id, since in waiting_since.items() if now - since > limit]
            if stuck and len(active) < worker.concurrency:
                self._give_up(worker, stuck, limit)
                return

    @staticmethod
    def _give_up(worker: Any, stuck: list[str], limit: float) -> None:
        logger.critical(
            "worker wedged: %d message(s) (%s) waited over %.0f s for its pool, which has idle "
            "processes and takes no job; killing the pool and exiting (code %d) so that a "
            "supervisor restarts the worker and the broker hands the messages on",
            len(stuck), ", ".join(stuck[:5]), limit, EXIT_WEDGED)
        for process in list(getattr(worker.pool._pool, "_pool", [])):
            try:
                os.kill(process.pid, signal.SIGKILL)
            except (ProcessLookupError, TypeError):
                continue  # gone already, or never started
        logging.shutdown()
        os._exit(EXIT_WEDGED)
