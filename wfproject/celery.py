"""The Celery app: configuration from celeryconfig.py; the outbox relay and the pool watchdog
as worker steps."""
from __future__ import annotations

import logging
import os
from typing import Any

from celery import Celery
from celery.signals import celeryd_after_setup, worker_init
from kombu.transport import TRANSPORT_ALIASES

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wfproject.settings")

# The embedded broker: kombu's filesystem transport with atomic writes (see fsbroker.py).
TRANSPORT_ALIASES.setdefault("wffs", "incidents.engine.fsbroker:Transport")
logger = logging.getLogger("incidents.worker")

app = Celery("wfproject")
app.config_from_object("celeryconfig")
# Celery's Django fixup closes the database connections around every task (celery#9824):
# a connect (and for PostgreSQL a login) per message. Reuse them for this many tasks instead;
# the engine closes a connection itself after any error that may have left it unusable.
app.conf.CELERY_DB_REUSE_MAX = int(os.environ.get("WF_DB_REUSE_TASKS", "100"))
# Named, not imported: importing the engine here would set Django up too early.
app.steps["worker"].add("incidents.engine.relay:RelayStep")
app.steps["worker"].add("incidents.engine.watchdog:PoolWatchdogStep")


@worker_init.connect
def _refuse_to_start_with_broken_workflows(**kwargs: object) -> None:
    from incidents.engine.registry import load_errors

    if load_errors:
        # SystemExit, because Celery logs and swallows exceptions raised by signal handlers.
        raise SystemExit("refusing to start: workflow modules failed to load (details: "
                         "`python manage.py check`): " + "; ".join(load_errors))


@celeryd_after_setup.connect
def _warn_of_queues_no_handler_serves(sender: str, instance: Any, **kwargs: object) -> None:
    """A -Q naming a queue no loaded module serves (a typo) would consume an empty queue in
    silence: say so at start, naming the queues that have handlers."""
    from incidents.engine.registry import registered_queues

    served = set(registered_queues())
    unserved = sorted(name for name in instance.app.amqp.queues.consume_from
                      if name not in served and not name.startswith("_"))
    if unserved:
        logger.warning("this worker consumes %s, but no loaded workflow module registers a "
                       "handler there (a typo in -Q, or WORKFLOW_MODULES missing a module?); "
                       "queues with handlers: %s", ", ".join(unserved),
                       ", ".join(sorted(served)) or "none")
