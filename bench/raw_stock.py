"""The stock Celery baseline: the shapes as plain Celery tasks (bench/raw_tasks.py) on an
app as a Celery user configures it out of the box for reliability: JSON only, acks late,
prefetch 1, durable queues and persistent messages (Celery's defaults), no result backend.
Nothing of the engine's: no publisher confirms, Celery's default consumer and prefork pool,
Celery's worker_lost_wait. Same broker and database as the engine.

    celery -A bench.raw_stock worker -Q stock_hop,stock_split,...   # the queues: tasks.queues
"""
from __future__ import annotations

import os

from celery import Celery
from kombu.transport import TRANSPORT_ALIASES

import celeryconfig
from bench.raw_tasks import register

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wfproject.settings")
TRANSPORT_ALIASES.setdefault("wffs", "incidents.engine.fsbroker:Transport")

# The embedded broker needs its folders and polling interval (they are how the transport
# works, not reliability); on RabbitMQ celeryconfig's options are the publisher confirms.
_transport_options = (celeryconfig.broker_transport_options
                      if celeryconfig.broker_url.startswith("wffs://") else {})

app = Celery("stockbench")
app.conf.update(
    broker_url=celeryconfig.broker_url,
    broker_transport_options=_transport_options,
    broker_connection_retry_on_startup=True,  # only silences Celery's deprecation warning
    task_serializer="json",
    accept_content=["json"],
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
)

tasks = register(app, "stock")
