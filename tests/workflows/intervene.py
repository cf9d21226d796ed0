"""Handlers an operator steps into (tests/test_inject.py): a step that waits for an external
service's data, and a step that goes on only once its input file exists."""
from __future__ import annotations

import json
from pathlib import Path

from incidents import workflow


@workflow.handler
def fetch_handler(message):
    """Read folder/data.json and hand its values on; without it, stop here (the incident is
    left with nothing in flight: an operator has to run this step again)."""
    data = Path(message["folder"]) / "data.json"
    if data.exists():
        values = json.loads(data.read_text())["values"]
        workflow.send(message={"IncidentID": message["IncidentID"], "values": values},
                      queue="ext_data")


@workflow.handler
def data_handler(message):
    """An external service's answer (or an operator's stand-in for it): sum it."""
    workflow.send(message={"IncidentID": message["IncidentID"], "total": sum(message["values"]),
                           "from": message["originator"]}, queue="ext_total")


@workflow.handler
def total_handler(message):
    workflow.Persist.Put(message["IncidentID"], {"total": message["total"], "from": message["from"]})
    workflow.Complete(message["IncidentID"], CleanPersist=False)


def RegisterHandlers():
    workflow.RegisterHandler(handler=fetch_handler, queue="ext_fetch")
    workflow.RegisterHandler(handler=data_handler, queue="ext_data")
    workflow.RegisterHandler(handler=total_handler, queue="ext_total")
