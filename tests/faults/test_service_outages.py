"""RabbitMQ, PostgreSQL and Redis go away mid-run and come back: workers and producers
reconnect, the relay republishes, handlers retry safely, and the end state is exact."""
from __future__ import annotations

import os
import time

import pytest
from django.db import connection

from incidents.processes import WorkerGroup, worker_env

from ..conftest import TEST_MODULES, need_service, wait_until
from . import services, workload

pytestmark = [pytest.mark.services, pytest.mark.timeout(900)]

OUTAGE_SECONDS = 5  # how long the service stays away (not a timing assertion)


def run_through(outage_start, outage_end, extra_env=None) -> None:
    env = worker_env({"WORKFLOW_MODULES": TEST_MODULES, "WORKFLOW_RELAY_STALE_SECONDS": "2",
                      "WORKFLOW_RELAY_INTERVAL_SECONDS": "1", **(extra_env or {})})
    with WorkerGroup(env=env) as group:
        group.start("o1")
        group.start("o2")
        work = workload.start(size=2000, hops=300)
        wait_until(lambda: workload.progress(work) >= 60, what="the run to get going")
        outage_start()
        try:
            time.sleep(OUTAGE_SECONDS)
        finally:
            outage_end()
        connection.close()  # this test process's own connection may have died too
        workload.assert_survived(work)
        assert all(w.process.poll() is None for w in group.workers), "a worker died"


def test_rabbitmq_stopped_and_started_mid_run(transactional_db, broker):
    services.need_control("rabbitmqctl")
    if not os.environ.get("CELERY_BROKER_URL", "").startswith("amqp"):
        pytest.skip("runs on the RabbitMQ stack")
    run_through(lambda: services.rabbitmq("stop"), lambda: services.rabbitmq("start"))


def test_postgresql_restarted_mid_run(transactional_db, broker):
    services.need_control("pg_ctlcluster", "pg_lsclusters")
    if connection.vendor != "postgresql":
        pytest.skip("runs on the PostgreSQL stack")
    run_through(services.postgres_restart, lambda: None)


def test_redis_backing_locks_unavailable_mid_run(transactional_db, broker):
    services.need_control("redis-cli", "redis-server")
    url = need_service("WF_TEST_REDIS_URL", "Redis")
    run_through(services.redis_stop, services.redis_start, {"WORKFLOW_REDIS_URL": url})
