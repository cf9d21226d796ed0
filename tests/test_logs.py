"""Workflow log lines carry the incident, queue and message, and can be JSON lines."""
from __future__ import annotations

import json
import logging
import sys

import pytest

from incidents.engine.context import HandlerRun, current_run
from incidents.logs import JsonLines, WorkflowContext
from incidents.processes import WorkerGroup, worker_env

from .conftest import TEST_MODULES, run_seed_example


def record_in(run: HandlerRun | None, message: str = "hello") -> logging.LogRecord:
    record = logging.LogRecord("workflows.test", logging.INFO, __file__, 1, message, (), None)
    token = current_run.set(run)
    try:
        assert WorkflowContext().filter(record)
    finally:
        current_run.reset(token)
    return record


def test_a_line_logged_in_a_handler_run_names_its_incident_queue_and_message():
    run = HandlerRun(originator="h", message_id="m-1", incident_id="i-1", queue="q")
    line = json.loads(JsonLines().format(record_in(run)))
    assert {k: line[k] for k in ("incident_id", "queue", "message_id", "message", "level")} == {
        "incident_id": "i-1", "queue": "q", "message_id": "m-1", "message": "hello",
        "level": "INFO"}


def test_outside_a_handler_the_context_is_a_dash_and_errors_keep_their_traceback():
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record = record_in(None, "failed")
        record.exc_info = sys.exc_info()
    line = json.loads(JsonLines().format(record))
    assert line["incident_id"] == line["queue"] == line["message_id"] == "-"
    assert "RuntimeError: boom" in line["traceback"]


@pytest.mark.e2e
def test_a_worker_with_json_logs_names_the_incident_and_queue_on_its_workflow_lines(
        transactional_db, broker):
    env = worker_env({"WORKFLOW_MODULES": TEST_MODULES, "WF_LOG_FORMAT": "json"})
    with WorkerGroup(env=env) as group:
        worker = group.start("json-logs")
        incident_id = str(run_seed_example("json logs").pk)
        lines = [json.loads(text) for text in worker.log_text().splitlines()
                 if text.startswith("{")]
    completed = [line for line in lines if "is COMPLETE" in line["message"]]
    assert completed and completed[0]["incident_id"] == incident_id
    assert completed[0]["queue"] == "B_queue" and completed[0]["message_id"] != "-"
