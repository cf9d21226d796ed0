"""Pool processes killed while idle: the worker goes on serving (the embedded broker runs
Celery's blocking prefork pool, whose children share one job pipe)."""
from __future__ import annotations

import os
import signal

import pytest

from incidents import workflow
from incidents.models import IncidentStatus
from incidents.processes import WorkerGroup, _children_of, worker_env

from ..conftest import TEST_MODULES, ended, wait_until

pytestmark = pytest.mark.e2e


def test_killing_every_idle_pool_process_does_not_wedge_the_worker(workers):
    worker = workers.start("w1", concurrency=2)
    for round_number in range(3):
        children = set(_children_of(worker.process.pid))
        assert len(children) == 2
        for child in children:  # one of them waits for the next job holding the pipe's lock
            os.kill(child, signal.SIGKILL)
        wait_until(lambda old=children: len(set(_children_of(worker.process.pid)) - old) == 2,
                   what="the pool to replace its processes")
        incident_id = workflow.CreateIncident(name=f"after kill {round_number}", kind="TEST")
        workflow.send(message={"IncidentID": incident_id, "left": 5}, queue="probe_chain")
        workflow.FlushMessages()
        incident = wait_until(lambda i=incident_id: ended(i), timeout=60,
                              what=f"round {round_number}: a chain after the kill")
        assert incident.status == IncidentStatus.COMPLETE
    assert worker.process.poll() is None


def test_a_wedged_worker_says_so_and_exits_and_its_message_is_handled_after_a_restart(
        transactional_db, broker):
    env = worker_env({"WORKFLOW_MODULES": TEST_MODULES, "WORKFLOW_WEDGED_POOL_SECONDS": "3"})
    with WorkerGroup(env=env) as group:
        wedged = group.start("wedged", concurrency=2)
        for child in _children_of(wedged.process.pid):  # alive, but takes no job
            os.kill(child, signal.SIGSTOP)
        incident_id = workflow.CreateIncident(name="wedged", kind="TEST")
        workflow.send(message={"IncidentID": incident_id, "left": 2}, queue="probe_chain")
        workflow.FlushMessages()
        wait_until(lambda: wedged.process.poll() is not None, timeout=60,
                   what="the watchdog to stop the wedged worker")
        assert wedged.process.returncode == 70
        assert "worker wedged" in wedged.log_text()
        group.start("restarted")  # as its supervisor would
        incident = wait_until(lambda: ended(incident_id), timeout=60, what="the chain")
        assert incident.status == IncidentStatus.COMPLETE
