"""Pool processes killed while idle: the worker goes on serving (the embedded broker runs
Celery's blocking prefork pool, whose children share one job pipe)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from django.conf import settings

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


def test_the_worker_command_loads_its_pool_without_setting_django_up_early():
    # The worker command imports the pool class before Django is set up. Importing the
    # incidents package then would set Django up as for a stand-alone script, without the
    # workflow modules: the deployed worker served only _Cleanup.
    env = {k: v for k, v in os.environ.items() if k != "WORKFLOW_MODULES"}
    code = ("from celery.concurrency import get_implementation; import celeryconfig; "
            "get_implementation(celeryconfig.worker_pool); import sys; "
            "print('incidents' in sys.modules, os.environ.get('WORKFLOW_MODULES'))")
    result = subprocess.run([sys.executable, "-c", f"import os; {code}"], env=env, cwd=settings.BASE_DIR,
                            capture_output=True, text=True, timeout=60)
    assert result.stdout.split() == ["False", "None"], result.stderr
