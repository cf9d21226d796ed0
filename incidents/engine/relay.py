"""The outbox relay as a worker step: every few seconds, publish what was left unpublished
(and kill what overdue drains left running: engine/draining.py); and, a few times a second,
publish the timers that are due (engine/timers.py)."""
from __future__ import annotations

import logging
import threading
from typing import Any

from celery import bootsteps

logger = logging.getLogger(__name__)


class RelayStep(bootsteps.StartStopStep):
    """Runs outbox.relay_once() in a background thread of each worker's main process."""

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._timer_thread: threading.Thread | None = None

    def start(self, worker: Any) -> None:
        from incidents.engine import deadletter

        with worker.app.connection_for_write() as connection:
            deadletter.declare(connection)  # rejected messages need somewhere to go
        self._thread = threading.Thread(target=self._loop, name="workflow-relay", daemon=True)
        self._thread.start()
        self._timer_thread = threading.Thread(target=self._timer_loop, name="workflow-timers",
                                              daemon=True)
        self._timer_thread.start()

    def stop(self, worker: Any) -> None:
        self._stop.set()
        for thread in (self._thread, self._timer_thread):
            if thread is not None:
                thread.join(timeout=10)

    def _timer_loop(self) -> None:
        from django.db import connection

        from incidents import conf
        from incidents.engine import timers

        # Its own thread, so a slow relay pass (a broker timing out) does not delay timers.
        while not self._stop.wait(conf.get("TIMER_INTERVAL_SECONDS")):
            try:
                timers.fire_due()
            except Exception:  # the timer loop must outlive a database or broker outage
                logger.warning("timer pass failed; will retry", exc_info=True)
                connection.close()  # the next pass connects afresh
            else:
                # Four passes a second: keep a PostgreSQL connection (psycopg does not close
                # one in a forked pool process, it checks the pid), but hold no SQLite one
                # the pool would fork (SQLite forbids that; opening it again is cheap).
                if connection.vendor != "postgresql":
                    connection.close()

    def _loop(self) -> None:
        from django.db import connection

        from incidents import conf
        from incidents.engine import draining, outbox

        while not self._stop.wait(conf.get("RELAY_INTERVAL_SECONDS")):
            try:
                outbox.relay_once()
                draining.kill_overdue()  # drains whose cleanup no free pool process took
            except Exception:  # the relay must outlive a database or broker outage
                logger.warning("relay pass failed; will retry", exc_info=True)
            finally:
                # Hold no connection between passes: the prefork pool forks from this process.
                connection.close()
