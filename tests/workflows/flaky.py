"""Handlers that fail and are retried, and a queue with a message contract, for
tests/test_retries.py and tests/test_contracts.py.

flaky_twice counts its runs in the message's "folder" (a file per run); each failing run
sends to flaky_side and Puts its attempt number (effects that must be discarded), and the
third run succeeds. flaky_always always fails; flaky_filtered retries ConnectionError only
and raises KeyError; flaky_asks raises workflow.Retry(delay=7.5) while its folder has no
"ready" file. contract_sized takes messages with a positive integer "size".
"""
from __future__ import annotations

from pathlib import Path

from incidents import workflow

SIZED_SCHEMA = {"type": "object", "required": ["size"],
                "properties": {"size": {"type": "integer", "minimum": 1}}}


def _count_run(message) -> int:
    folder = Path(message["folder"])
    run = len(list(folder.glob("run-*"))) + 1
    (folder / f"run-{run}").touch()
    return run


@workflow.handler
def flaky_twice(message):
    run = _count_run(message)
    incident_id = message["IncidentID"]
    workflow.Persist.Put(incident_id, {"attempt": run})
    if run < 3:
        workflow.send(message={"IncidentID": incident_id, "attempt": run}, queue="flaky_side")
        raise ValueError(f"flaky on run {run}")
    workflow.Complete(incident_id)


@workflow.handler
def flaky_always(message):
    _count_run(message)
    raise ValueError("always broken")


@workflow.handler
def flaky_filtered(message):
    _count_run(message)
    raise KeyError("not a retried error")


@workflow.handler
def flaky_asks(message):
    _count_run(message)
    if not (Path(message["folder"]) / "ready").exists():
        raise workflow.Retry(delay=7.5, reason="the input is not ready")
    workflow.Complete(message["IncidentID"])


@workflow.handler
def flaky_side(message):
    pass


@workflow.handler
def contract_sized(message):
    workflow.Complete(message["IncidentID"])


def RegisterHandlers():
    workflow.RegisterHandler(flaky_twice, "flaky_twice", retries=3, retry_backoff=1)
    workflow.RegisterHandler(flaky_always, "flaky_always", retries=2, retry_backoff=1)
    workflow.RegisterHandler(flaky_filtered, "flaky_filtered", retries=3,
                             retry_on=ConnectionError)
    workflow.RegisterHandler(flaky_asks, "flaky_asks")
    workflow.RegisterHandler(flaky_side, "flaky_side")
    workflow.RegisterHandler(contract_sized, "contract_sized", schema=SIZED_SCHEMA)
