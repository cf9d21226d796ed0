"""Whole workflows on real worker processes (the embedded default, or RabbitMQ + PostgreSQL)."""
from __future__ import annotations

import itertools
import random
import signal
import subprocess
import sys

import pytest
from django.conf import settings

from incidents import workflow
from incidents.engine.registry import CLEANUP_QUEUE
from incidents.models import FINAL_STATUSES, Incident, IncidentStatus, MessageLog, MessageStatus
from incidents.processes import worker_env
from workflows import quicksort

from .conftest import ended, run_seed_example, start_blocked_incident, wait_until

pytestmark = pytest.mark.e2e


def test_the_seed_example_with_only_its_import_changed_runs_to_complete(transactional_db, broker):
    log = settings.VAR_DIR / "logs" / "seed-example.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = worker_env()
    del env["WORKFLOW_MODULES"]  # a stand-alone script registers its own handlers
    with open(log, "wb") as out:
        script = subprocess.Popen([sys.executable, "tests/seed/example.py"], cwd=settings.BASE_DIR,
                                  env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        incident = wait_until(lambda: Incident.objects.filter(kind="DUMMY_INCIDENT",
                                                              cleaned_at__isnull=False).first(),
                              what="the seed example's incident to complete")
    finally:
        script.send_signal(signal.SIGINT)  # Ctrl+C
        script.wait(timeout=60)
    assert script.returncode == 0, "Ctrl+C should stop workflow.execute() cleanly"
    assert incident.status == IncidentStatus.COMPLETE
    output = log.read_text()
    assert "Hello from A" in output and "Hello from B" in output
    assert list(incident.messages.order_by("submitted").values_list("destination", "status")) == [
        ("A_queue", "COMPLETE"), ("B_queue", "COMPLETE"), (CLEANUP_QUEUE, "COMPLETE")]


def test_the_seed_workflow_completes_under_celery_workers(workers):
    workers.env["WORKFLOW_STORE_TASK_RESULTS"] = "1"
    workers.start("w1")
    incident = run_seed_example("some name")
    assert incident.status == IncidentStatus.COMPLETE
    assert "Hello from B" in workers.workers[0].log_text()
    # With task results kept, each handling left one, found by task id = MessageID.
    from django_celery_results.models import TaskResult

    handled = incident.messages.values_list("id", flat=True)
    results = TaskResult.objects.filter(task_id__in=[str(i) for i in handled])
    assert sorted(results.values_list("task_name", "status")) == [
        ("workflow.A_queue", "SUCCESS"), ("workflow.B_queue", "SUCCESS"),
        ("workflow._Cleanup", "SUCCESS")]


def test_run_py_the_seeds_entry_point_starts_a_worker_that_runs_workflows(workers):
    workers.start("seed-entry", program=[sys.executable, str(settings.BASE_DIR / "run.py")])
    incident = run_seed_example("via run.py")
    assert incident.status == IncidentStatus.COMPLETE
    assert "Hello from B" in workers.workers[0].log_text()


def test_quicksort_of_1000_numbers_on_two_workers_sorts_and_merges_one_at_a_time(workers):
    workers.start("w1")
    workers.start("w2")
    numbers = [random.randint(0, 300) for _ in range(1000)]
    incident_id = workflow.CreateIncident(name="sort", kind=quicksort.KIND)
    quicksort.start(incident_id, numbers)
    workflow.FlushMessages()
    incident = wait_until(lambda: ended(incident_id), what="quicksort to complete")
    assert incident.status == IncidentStatus.COMPLETE
    assert quicksort.sorted_result(incident_id) == sorted(numbers)
    log = MessageLog.objects.filter(incident_id=incident_id)
    assert set(log.values_list("status", flat=True)) == {MessageStatus.COMPLETE}
    assert {w.name for w in workers.workers} == {"w1", "w2"}
    consumers = set(log.values_list("consumer", flat=True))
    assert len(consumers) == 2, f"both workers should have handled messages: {consumers}"
    # The merge handler is atomic: its runs for one incident never overlap in time.
    runs = list(log.filter(destination="quicksort_merge").order_by("received")
                .values_list("received", "completed"))
    assert len(runs) > 50
    overlaps = [(a, b) for a, b in itertools.pairwise(runs) if b[0] < a[1]]
    assert overlaps == []


def test_cancel_mid_run_stops_the_workflow_and_cleans_up_after_the_last_message(workers):
    workers.start("w1")
    incident_id = workflow.CreateIncident(name="long chain", kind="TEST")
    workflow.send(message={"IncidentID": incident_id, "left": 100_000}, queue="probe_chain")
    workflow.FlushMessages()
    wait_until(lambda: MessageLog.objects.filter(incident_id=incident_id,
                                                 status=MessageStatus.COMPLETE).count() >= 20)
    workflow.Cancel(incident_id, reason="operator stop")
    workflow.FlushMessages()
    incident = wait_until(lambda: ended(incident_id), what="cleanup after cancel")
    assert (incident.status, incident.comment) == (IncidentStatus.CANCELLED, "operator stop")
    chain = MessageLog.objects.filter(incident_id=incident_id, destination="probe_chain")
    assert set(chain.values_list("status", flat=True)) <= set(FINAL_STATUSES)
    assert chain.filter(status=MessageStatus.NOT_PROCESSED).exists()
    assert chain.filter(status=MessageStatus.COMPLETE).count() < 1000
    last_handled = max(chain.values_list("completed", flat=True))
    assert incident.cleaned_at >= last_handled


def test_kill_stops_a_running_handler_and_cleans_up_at_once(workers, tmp_path):
    from incidents.engine import operations

    worker = workers.start("w1")
    incident_id = start_blocked_incident(tmp_path, "stuck")
    report = operations.kill_incident(incident_id, reason="runaway", by="test")
    assert report.killed and report.stopped_messages == 1
    incident = wait_until(lambda: ended(incident_id), what="the forced cleanup")
    assert (incident.status, incident.ended_by) == (IncidentStatus.KILLED, "test")
    wait_until(lambda: "Terminating" in worker.log_text() or "revoked" in worker.log_text(),
               what="the worker to terminate the running handler")
    (tmp_path / "release").touch()  # had the handler survived, it would now send on
    # The worker carries on with other incidents, and the killed handler's effects never land.
    other = workflow.CreateIncident(name="after kill", kind="TEST")
    workflow.send(message={"IncidentID": other, "left": 2}, queue="probe_chain")
    workflow.FlushMessages()
    assert wait_until(lambda: ended(other), what="another incident").status == IncidentStatus.COMPLETE
    blocked = MessageLog.objects.get(incident_id=incident_id, destination="probe_block")
    assert blocked.status == MessageStatus.NOT_PROCESSED and "killed by test" in blocked.comment
    assert not MessageLog.objects.filter(incident_id=incident_id, destination="probe_count").exists()


def test_run_demo_runs_quicksort_on_its_own_workers_and_checks_the_result(transactional_db, broker):
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("run_demo", "--size", "200", "--workers", "2", stdout=out)
    output = out.getvalue()
    assert "started 2 worker processes" in output
    assert "COMPLETE: ran for" in output and "sorted 200 numbers correctly" in output


def test_run_demo_refuses_a_workflow_without_a_demo(transactional_db):
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="workflow 'simple' has no demo"):
        call_command("run_demo", "--workflow", "simple")


def test_a_handler_over_its_time_limit_is_stopped_and_logged_error(workers):
    worker = workers.start("w1")
    hung = workflow.CreateIncident(name="hangs", kind="TEST")
    workflow.send(message={"IncidentID": hung}, queue="probe_hang")
    workflow.FlushMessages()
    incident = wait_until(lambda: ended(hung), what="the time limit to end the handler")
    assert incident.status == IncidentStatus.ERROR
    assert "hang_handler exceeded its time limit" in incident.comment
    row = MessageLog.objects.get(incident_id=hung, destination="probe_hang")
    assert row.status == MessageStatus.ERROR and "SoftTimeLimitExceeded" in row.comment
    assert not MessageLog.objects.filter(incident_id=hung, destination="probe_chain").exists()
    # The worker carries on.
    other = workflow.CreateIncident(name="next", kind="TEST")
    workflow.send(message={"IncidentID": other, "left": 1}, queue="probe_chain")
    workflow.FlushMessages()
    assert wait_until(lambda: ended(other)).status == IncidentStatus.COMPLETE
    assert worker.process.poll() is None


def test_a_worker_told_to_consume_a_queue_no_handler_serves_says_so_at_start(workers):
    worker = workers.start("typo", queues=["probe_chain", "prob_chain"])
    # The warning comes before the worker says it is ready, which start() waited for.
    [warning] = [line for line in worker.log_text().splitlines()
                 if "no loaded workflow module" in line]
    assert "consumes prob_chain, but" in warning  # the typo, and only it
    assert "probe_chain" in warning.split("queues with handlers:")[1]  # what exists
    plain = workers.start("every-queue")  # no -Q: every registered queue, no warning
    assert "no loaded workflow module" not in plain.log_text()
