"""Handlers that get an incident stuck in the ways `diagnose_incident` names, for
tests/test_diagnosis.py: a queue no worker consumes, a long run, a held @atomic lock with a
delivery waiting for it, and a graph that ends without Complete."""
from __future__ import annotations

import time
from pathlib import Path

from incidents import workflow


def _block_until_released(message):
    """With a "folder": record the start, then wait (bounded) for folder/release."""
    if "folder" not in message:
        return
    folder = Path(message["folder"])
    (folder / f"started-{message.get('name', 'run')}").touch()
    deadline = time.monotonic() + 120
    while not (folder / "release").exists() and time.monotonic() < deadline:
        time.sleep(0.05)


@workflow.handler
def stuck_dead_end_handler(message):
    """Sends nothing and does not Complete: the graph ends with the incident ACTIVE."""


@workflow.handler
def stuck_unconsumed_handler(message):
    """Registered, so its queue exists; the tests start no worker that consumes it."""
    workflow.Complete(message["IncidentID"])


@workflow.handler
def stuck_slow_handler(message):
    """Quick, unless the message names a folder: then it runs until released."""
    _block_until_released(message)


@workflow.atomic
@workflow.handler
def stuck_gate_handler(message):
    """One run at a time per incident; a blocked run holds the lock _atomic:stuck_gate_handler."""
    _block_until_released(message)


def RegisterHandlers():
    workflow.RegisterHandler(handler=stuck_dead_end_handler, queue="stuck_dead_end")
    workflow.RegisterHandler(handler=stuck_unconsumed_handler, queue="stuck_unconsumed")
    workflow.RegisterHandler(handler=stuck_slow_handler, queue="stuck_slow")
    workflow.RegisterHandler(handler=stuck_gate_handler, queue="stuck_gate")
