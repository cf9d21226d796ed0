"""Running a worker in this process (workflow.execute) and checking the broker connection."""
from __future__ import annotations

import logging
import time

import kombu.pools
from kombu.utils.url import maybe_sanitize_url

from incidents import conf
from incidents.engine import celery_app, publisher
from incidents.engine.registry import registered_queues
from incidents.exceptions import BrokerUnavailable

logger = logging.getLogger(__name__)


def open_connection(retries: int = 3, delay: float = 1.0, url: str | None = None) -> None:
    """Check that the broker (default: the configured one) answers; raise BrokerUnavailable
    naming it (without the password) after `retries` tries."""
    app = celery_app.get()
    shown = maybe_sanitize_url(url or app.conf.broker_url)
    for attempt in range(1, retries + 1):
        try:
            with app.connection_for_write(url) as connection:
                connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0.1)
            return
        except Exception as exc:  # any transport error means "not reachable" here
            if attempt == retries:
                raise BrokerUnavailable(
                    f"cannot reach the message broker at {shown} after {retries} tries: {exc}; "
                    "check CELERY_BROKER_URL and that the broker is running") from exc
            logger.warning("broker %s not reachable (try %d of %d): %s", shown, attempt, retries, exc)
            time.sleep(delay * attempt)


def close_connection() -> None:
    """Close this process's broker connections; the next send opens new ones (the original's
    external services open, send, flush and close on every call)."""
    publisher.for_this_thread().close()
    app = celery_app.get()
    app.pool.force_close_all()
    # Celery's producers come from kombu's process-wide pools, which close with it. A closed
    # pool refuses to lend ("Acquire on closed pool"), so drop them all, as Celery does after
    # a fork, and they are made anew on next use.
    kombu.pools.reset()
    app._pool = None
    app.amqp._producer_pool = None


def execute(concurrency: int | None = None, loglevel: str = "INFO") -> None:
    """Consume every registered queue (and _Cleanup) in this process until interrupted."""
    app = celery_app.get()
    worker = app.Worker(
        queues=registered_queues(),
        pool="threads",
        concurrency=concurrency or conf.get("EXECUTE_CONCURRENCY"),
        loglevel=loglevel,
        without_mingle=True,
        without_gossip=True,
    )
    worker.start()
