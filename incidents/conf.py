"""Engine settings, read at call time: settings.WORKFLOW_<NAME>, else the environment
variable of the same name, else the default documented here."""
from __future__ import annotations

import math
import os
from typing import Any

from django.conf import settings

from incidents.exceptions import WorkflowConfigError

DEFAULTS: dict[str, Any] = {
    # Dotted module paths loaded at start-up; each defines RegisterHandlers().
    "MODULES": [],
    # Largest JSON message body send() accepts, in bytes.
    "MAX_MESSAGE_BYTES": 1024 * 1024,
    # Seconds a lock lives without renewal; holders renew every third of it, so only a dead
    # holder's lock expires.
    "LOCK_LEASE_SECONDS": 60.0,
    # redis://127.0.0.1:6379/0 to keep locks in Redis; empty keeps them in the database.
    "REDIS_URL": "",
    # Seconds between outbox relay passes in each worker.
    "RELAY_INTERVAL_SECONDS": 5.0,
    # A message committed but unpublished for this long is published by the relay.
    "RELAY_STALE_SECONDS": 10.0,
    # Seconds between passes of each worker's timer loop, which publishes the messages sent
    # with send(delay=...) once due: a timer fires at most about this late on an idle system.
    "TIMER_INTERVAL_SECONDS": 0.25,
    # Seconds a delivery to a busy @atomic handler waits in its worker for the lock before it
    # goes back to the broker to retry (most atomic runs are short; a retry costs far more).
    "ATOMIC_WAIT_SECONDS": 1.0,
    # Seconds a handler's first Persist.Put waits for a sibling that holds the incident's
    # persist lock (from its own first Put until its commit); then the run is dropped and its
    # message retried later, so two handlers waiting on each other cannot hang for ever.
    "PERSIST_WAIT_SECONDS": 60.0,
    # Seconds an ended incident's cleanup waits for messages no worker has taken (a queue
    # nobody consumes): then they are logged NOT PROCESSED and the cleanup goes on. Messages
    # whose handler is running are always waited for (a Kill stops those).
    "CLEANUP_WAIT_SECONDS": 300.0,
    # Retry delays (seconds) for a message waiting for an atomic handler's lock or for cleanup.
    "RETRY_MIN_SECONDS": 0.05,
    "RETRY_MAX_SECONDS": 5.0,
    # Worker threads started by workflow.execute().
    "EXECUTE_CONCURRENCY": 2,
    # Seconds a message may wait for a pool that has idle processes and takes no job before
    # the worker counts as wedged: it kills its pool and exits (code 70) for its supervisor
    # to restart it. 0: never.
    "WEDGED_POOL_SECONDS": 60.0,
    # Seconds a handler may run (0: no limit; RegisterHandler(time_limit=...) per queue). At
    # the limit SoftTimeLimitExceeded is raised in the handler (logged ERROR); if it does not
    # stop within the grace, its worker process is replaced and the message retried.
    "HANDLER_TIME_LIMIT_SECONDS": 0.0,
    "HARD_TIME_LIMIT_GRACE_SECONDS": 30.0,
    # A message whose handling started this many times without ending (worker killed, hard
    # time limit) is logged ERROR instead of being tried again.
    "MAX_ATTEMPTS": 5,
    # Above this many nodes, an incident's graph collapses tagged nodes into one per handler.
    "GRAPH_MAX_NODES": 200,
    # Root of the per-incident scratch directories (workflow.IncidentDir); empty: var/incidents.
    "SCRATCH_DIR": "",
    # Folder of the result files handlers attach (workflow.AttachResult); empty: var/results.
    # A deployment may instead define settings.STORAGES["workflow_results"] (S3 and the like).
    "RESULTS_DIR": "",
    # Days a result file is kept after it was attached, once its incident has ended; then
    # `manage.py prune_results` (and, a batch at a time, each incident's cleanup) deletes
    # it. 0: keep for ever.
    "RESULTS_RETENTION_DAYS": 30.0,
    # Hours an incident that ended ERROR stays resumable: its cleanup keeps its persisted
    # state and scratch directory that long (locks are released), then a batch in a later
    # incident's cleanup removes them. 0: keep nothing, Resume is refused.
    "RESUME_RETENTION_HOURS": 72.0,
    # Serve Prometheus metrics at /metrics; with a token, scrapers must send it as a Bearer.
    "METRICS": False,
    "METRICS_TOKEN": "",
    # Flower's address as operators reach it (http://127.0.0.1:5555): the admin links each
    # message to its task there (task id = MessageID). Empty: no links.
    "FLOWER_URL": "",
    # Seconds a handler runs before its message is marked PROCESSING (engine/running.py):
    # shorter runs claim and finish their message in the one commit that ends them.
    "CLAIM_AFTER_SECONDS": 0.5,
    # Also keep each handler task's Celery result (django-celery-results) for tools that read
    # them (Flower, AsyncResult); off: the message log holds the same (status, traceback).
    "STORE_TASK_RESULTS": False,
}

_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def get(name: str) -> Any:
    """Return the setting WORKFLOW_<name>."""
    key = f"WORKFLOW_{name}"
    if hasattr(settings, key):
        return getattr(settings, key)
    default = DEFAULTS[name]
    raw = os.environ.get(key)
    if raw is None:
        return default
    if isinstance(default, list):
        return [item.strip() for item in raw.split(",") if item.strip()]
    try:
        if isinstance(default, bool):
            if raw.lower() not in _TRUE + _FALSE:
                raise ValueError(raw)
            return raw.lower() in _TRUE
        return type(default)(raw)
    except ValueError:
        raise WorkflowConfigError(
            f"environment variable {key}={raw!r} is not a {type(default).__name__}; "
            f"set it like {key}={default!r}") from None


def non_negative(name: str, *, unit: str, example: str, meaning: str) -> float:
    """The setting WORKFLOW_<name> as a finite number of `unit` >= 0, or an error saying how
    to set it (`example`, `meaning` of its values)."""
    raw = get(name)
    try:
        value = float(raw) if not isinstance(raw, bool) else math.nan
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value) or value < 0:
        shown = f"{raw:g}" if isinstance(raw, float) else repr(raw)
        raise WorkflowConfigError(
            f"WORKFLOW_{name}={shown} is not a number of {unit} >= 0; set it like "
            f"WORKFLOW_{name}={example} ({meaning})")
    return value
