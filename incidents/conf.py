"""Engine settings, read at call time; each has the WORKFLOW_ prefix and a default here."""
from __future__ import annotations

from typing import Any

from django.conf import settings

DEFAULTS: dict[str, Any] = {
    # Dotted module paths loaded at start-up; each defines RegisterHandlers().
    "MODULES": [],
    # Largest JSON message body send() accepts, in bytes.
    "MAX_MESSAGE_BYTES": 1024 * 1024,
    # Seconds a lock is held before another worker may take it over (a dead holder's lease).
    "LOCK_LEASE_SECONDS": 300.0,
    # redis://127.0.0.1:6379/0 to keep locks in Redis; empty keeps them in the database.
    "REDIS_URL": "",
    # Seconds between outbox relay passes in each worker.
    "RELAY_INTERVAL_SECONDS": 5.0,
    # A message committed but unpublished for this long is published by the relay.
    "RELAY_STALE_SECONDS": 10.0,
    # Retry delays (seconds) for a message waiting for an atomic handler's lock or for cleanup.
    "RETRY_MIN_SECONDS": 0.05,
    "RETRY_MAX_SECONDS": 2.0,
    # Worker threads started by workflow.execute().
    "EXECUTE_CONCURRENCY": 2,
}


def get(name: str) -> Any:
    """Return settings.WORKFLOW_<name>, or its default."""
    return getattr(settings, f"WORKFLOW_{name}", DEFAULTS[name])
