"""Handlers the tests drive: a chain, a blocking step, a failing step, a lock user."""
from __future__ import annotations

import time
from pathlib import Path

from incidents import workflow


@workflow.handler
def chain_handler(message):
    """Hop along a chain of `left` messages (from the message, or the parameters of a chain
    started by kind), then complete the incident; `pause` seconds (at most 1) per hop."""
    parameters = message.get("parameters", {})
    left = message.get("left", parameters.get("left", 0))
    pause = min(1.0, float(message.get("pause", parameters.get("pause", 0))))
    if left <= 0:
        workflow.Complete(message["IncidentID"])
        return
    time.sleep(pause)
    workflow.send(message={"IncidentID": message["IncidentID"], "left": left - 1,
                           **({"pause": pause} if pause else {})}, queue="probe_chain")


@workflow.handler
def block_handler(message):
    """Record the run, then wait (bounded) until the test creates the release file."""
    folder = Path(message["folder"])
    runs = len(list(folder.glob("started-*")))
    (folder / f"started-{runs + 1}").touch()
    deadline = time.monotonic() + 120
    while not (folder / "release").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    workflow.Persist.Put(message["IncidentID"], {"blocked": True})
    workflow.send(message={"IncidentID": message["IncidentID"]}, queue="probe_count")


@workflow.handler
def count_handler(message):
    workflow.Persist.Put(message["IncidentID"], {"counted": True})
    workflow.Complete(message["IncidentID"], CleanPersist=False)


@workflow.handler
def hang_handler(message):
    """Runs until stopped (bounded, so a broken time limit cannot hang the test run)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        time.sleep(0.05)
    workflow.send(message={"IncidentID": message["IncidentID"], "left": 0}, queue="probe_chain")


@workflow.handler
def fail_handler(message):
    workflow.send(message={"IncidentID": message["IncidentID"], "left": 1}, queue="probe_chain")
    raise RuntimeError("probe failure")


def RegisterHandlers():
    workflow.RegisterKind("PROBE_CHAIN", queue="probe_chain", description='{"left": hops}')
    workflow.RegisterHandler(handler=chain_handler, queue="probe_chain")
    workflow.RegisterHandler(handler=block_handler, queue="probe_block")
    workflow.RegisterHandler(handler=count_handler, queue="probe_count")
    workflow.RegisterHandler(handler=fail_handler, queue="probe_fail")
    workflow.RegisterHandler(handler=hang_handler, queue="probe_hang", time_limit=1)
