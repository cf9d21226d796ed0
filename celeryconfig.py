"""Celery settings: JSON only, durable queues, persistent messages, acks after handling."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

_VAR_DIR = Path(os.environ.get("WF_VAR_DIR", Path(__file__).resolve().parent / "var")).resolve()
_BROKER_DIR = _VAR_DIR / "broker"

# CELERY_BROKER_URL=amqp://user:pass@127.0.0.1:5672/vhost for RabbitMQ; the embedded
# filesystem broker under var/broker/ otherwise (no server, shared by local processes).
broker_url = os.environ.get("CELERY_BROKER_URL", "wffs://")
broker_transport_options: dict[str, Any] = {}
if broker_url.startswith("amqp"):
    broker_transport_options = {
        # Publisher confirms for Celery's own publishes (a task retry returns once RabbitMQ
        # has the new copy, before the old one is acked). The outbox publishes without them:
        # the message log is its record, and the relay publishes again what RabbitMQ lost.
        "confirm_publish": os.environ.get("WF_PUBLISHER_CONFIRMS", "1") == "1",
    }
elif broker_url.startswith("wffs://"):
    for _folder in ("queue", "processed", "control"):
        (_BROKER_DIR / _folder).mkdir(parents=True, exist_ok=True)
    broker_transport_options = {
        "data_folder_in": str(_BROKER_DIR / "queue"),
        "data_folder_out": str(_BROKER_DIR / "queue"),
        "processed_folder": str(_BROKER_DIR / "processed"),
        "control_folder": str(_BROKER_DIR / "control"),
        "polling_interval": float(os.environ.get("WF_BROKER_POLL_SECONDS", "0.02")),
    }
broker_connection_retry_on_startup = True

# Never pickle: only JSON is accepted from the wire.
task_serializer = "json"
result_serializer = "json"
event_serializer = "json"
accept_content = ["json"]
result_accept_content = ["json"]

# A message is acknowledged after its handler's effects are committed; a worker that dies
# mid-handler leaves it for redelivery.
task_acks_late = True
task_reject_on_worker_lost = True
# Requeue a dead pool process's message after 1 s, not Celery's 10: until then the message
# waits, and an @atomic run's lock with it. A copy handled twice is dropped by the engine.
worker_lost_wait = 1.0
# Prefork, with pipe locks a killed pool process cannot keep (wfproject/prefork.py; outside the
# incidents package, which the worker command would import before Django is set up).
worker_pool = "wfproject.prefork:TaskPool"
worker_prefetch_multiplier = 1
worker_cancel_long_running_tasks_on_connection_loss = True
# A task that fails (an infrastructure error escaped the engine) is dead-lettered, not
# acknowledged; one past its hard time limit is requeued (the engine gives up after
# WORKFLOW_MAX_ATTEMPTS). Undecodable messages are dead-lettered too.
task_acks_on_failure = False
task_acks_on_timeout = False
worker_consumer = "incidents.engine.consumer:Consumer"
task_create_missing_queues = True
task_default_queue = "_default"

# Results of handler tasks are written by the engine in the commit that finishes a message
# (WORKFLOW_STORE_TASK_RESULTS, engine/results.py); the backend reads them back by task id.
result_backend = "django-db"
task_ignore_result = True

worker_hijack_root_logger = False
# Task events (what Flower shows) cost a broker message per task state change (on the
# embedded broker, a file each while a monitor listens): off by default; on for the workers
# the image starts (`deploy/entrypoint.sh worker` runs `celery worker -E`), or pass -E.
worker_send_task_events = False
