"""Timers outlive every worker and the broker: RabbitMQ and the workers restart between a
timer's commit and its due time, and it still fires, no earlier than due, once."""
from __future__ import annotations

import os

import pytest
from django.db import connection
from django.utils import timezone

from incidents import workflow
from incidents.engine import registry
from incidents.models import MessageLog, MessageStatus
from incidents.processes import WorkerGroup, worker_env

from ..conftest import TEST_MODULES, wait_until
from . import services

registry.load_workflow_modules(["tests.workflows.timers"])

pytestmark = [pytest.mark.services, pytest.mark.timeout(600)]

TIMERS = 20


def test_timers_fire_after_the_workers_and_rabbitmq_restarted(transactional_db, broker):
    services.need_control("rabbitmqctl")
    if not os.environ.get("CELERY_BROKER_URL", "").startswith("amqp"):
        pytest.skip("runs on the RabbitMQ stack")
    env = worker_env({"WORKFLOW_MODULES": f"{TEST_MODULES},tests.workflows.timers"})
    incident_id = workflow.CreateIncident(name="timers across restarts", kind="TEST")
    with WorkerGroup(env=env) as group:
        first = group.start("t1")
        ids = [workflow.send({"IncidentID": incident_id, "n": n}, "timer_target", delay=10)
               for n in range(TIMERS)]
        workflow.FlushMessages()
        first.stop()
        services.rabbitmq("stop")
        try:
            due = max(MessageLog.objects.filter(pk__in=ids).values_list("not_before", flat=True))
            wait_until(lambda: timezone.now() > due, what="the timers' due time to pass")
            assert MessageLog.objects.filter(pk__in=ids, status=MessageStatus.QUEUED).count() \
                == TIMERS  # held by the log alone
        finally:
            services.rabbitmq("start")
        connection.close()
        group.start("t2")
        wait_until(lambda: MessageLog.objects.filter(
            pk__in=ids, status=MessageStatus.COMPLETE).count() == TIMERS,
            what="every timer to fire after the restarts")
    rows = MessageLog.objects.filter(pk__in=ids)
    assert all(r.attempts == 1 and r.received >= r.not_before for r in rows)
