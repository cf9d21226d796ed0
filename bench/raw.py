"""The baseline with the engine's settings: the shapes as plain Celery tasks
(bench/raw_tasks.py) on an app configured from celeryconfig.py, as the engine's is (JSON,
acks late, prefetch 1, durable queues, publisher confirms on RabbitMQ, the engine's prefork
pool, database connections reused across tasks), with Celery's own consumer and no result
backend.

    celery -A bench.raw worker -Q raw_hop,raw_split,...   # the queues: tasks.queues
"""
from __future__ import annotations

import os

from celery import Celery
from kombu.transport import TRANSPORT_ALIASES

from bench.raw_tasks import register

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wfproject.settings")
TRANSPORT_ALIASES.setdefault("wffs", "incidents.engine.fsbroker:Transport")

app = Celery("rawbench")
app.config_from_object("celeryconfig")
app.conf.update(result_backend=None, task_ignore_result=True,
                worker_consumer="celery.worker.consumer:Consumer")
# As wfproject/celery.py: database connections reused across tasks, not one per task.
app.conf.CELERY_DB_REUSE_MAX = int(os.environ.get("WF_DB_REUSE_TASKS", "100"))

tasks = register(app, "raw")
