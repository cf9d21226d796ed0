"""A fan-in with a bug that can be fixed while the incident waits, for tests/test_resume.py.

resumable_start sends two parts; each resumable_part Puts its part and writes it to the
incident's scratch directory, and the last one sends to resumable_step. That step raises
while the message's "flag" file exists (the bug; the test removes the file: the fix, read at
run time, so workers need no restart), then sends to resumable_finish, which Gets the parts
and reads the scratch files (what a resume must have kept), attaches their sum and
completes. resumable_side does nothing: a message to it can be refused while the incident
has failed.
"""
from __future__ import annotations

import json
from pathlib import Path

from incidents import workflow

PARTS = (20, 22)
RESULT = "parts.json"


@workflow.handler
def resumable_start(message):
    for part in PARTS:
        workflow.send(message={"IncidentID": message["IncidentID"], "flag": message["flag"],
                               "part": part}, queue="resumable_part")


@workflow.handler
def resumable_part(message):
    incident_id = message["IncidentID"]
    workflow.Persist.Put(incident_id, {"part": message["part"]})
    (workflow.IncidentDir(incident_id) / f"part-{message['part']}.txt").write_text(
        str(message["part"]))
    if len(workflow.Persist.Get(incident_id)) == len(PARTS):  # the last part: go on, once
        workflow.send(message={"IncidentID": incident_id, "flag": message["flag"]},
                      queue="resumable_step")


@workflow.handler
def resumable_step(message):
    if Path(message["flag"]).exists():
        raise RuntimeError(f"resumable_step: the bug ({message['flag']} exists)")
    workflow.send(message={"IncidentID": message["IncidentID"]}, queue="resumable_finish")


@workflow.handler
def resumable_finish(message):
    incident_id = message["IncidentID"]
    parts = sorted(state["part"] for state in workflow.Persist.Get(incident_id,
                                                                   ignoreOriginator=True))
    files = sorted(int(path.read_text())
                   for path in workflow.IncidentDir(incident_id).glob("part-*.txt"))
    workflow.AttachResult(incident_id, RESULT, json.dumps(
        {"parts": parts, "files": files, "sum": sum(parts)}))
    workflow.Complete(incident_id)


@workflow.handler
def resumable_side(message):
    """Handles nothing: its messages show whether a resume queued them again."""


def RegisterHandlers():
    workflow.RegisterHandler(handler=resumable_start, queue="resumable_start")
    workflow.RegisterHandler(handler=resumable_part, queue="resumable_part")
    workflow.RegisterHandler(handler=resumable_step, queue="resumable_step")
    workflow.RegisterHandler(handler=resumable_finish, queue="resumable_finish")
    workflow.RegisterHandler(handler=resumable_side, queue="resumable_side")
