"""Handlers holding jobs in a fake batch scheduler, for tests/test_resources.py and
tests/faults/test_resource_release.py.

The fake scheduler is a directory (the message's "root"): submitting job J creates jobs/J.
Cancelling it (the release handler, res_cancel_job) appends J to calls.log on every call and
creates cancelled/J, which a second call leaves as it is: the cancel is idempotent by ref, as
a scheduler's cancel of a job already cancelled is. While root/fail exists the cancel fails;
while root/block exists it waits (after its side effect) until root/unblock does.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

from incidents import workflow

RELEASE_QUEUE = "res_cancel_job"
FLAKY_RELEASE_QUEUE = "res_cancel_flaky"


def submit(root: Path, incident_id: str, ref: str, release_queue: str | None) -> None:
    (root / "jobs").mkdir(parents=True, exist_ok=True)
    (root / "jobs" / ref).touch()
    workflow.RegisterResource(incident_id, "fake_job", ref, release_queue=release_queue,
                              data={"root": str(root)})


@workflow.handler
def res_start(message):
    """Submit message["jobs"] and register each; then message["then"]: "complete",
    "cancel", "fail" (raise after registering), "next" (res_next completes), "error_next"
    (res_next fails: the incident ends ERROR), or nothing (the incident stays live)."""
    incident_id, root = message["IncidentID"], Path(message["root"])
    queue = message.get("release_queue", RELEASE_QUEUE)
    for ref in message.get("jobs", []):
        submit(root, incident_id, ref, queue)
    then = message.get("then", "")
    if then == "cancelled_meanwhile":  # an operator's Cancel commits while this run goes on
        from incidents.engine import operations  # a test's stand-in for the operator

        cancel = threading.Thread(target=operations.cancel_incident, args=(incident_id,),
                                  kwargs={"by": "operator"})
        cancel.start()
        cancel.join()
    if then == "fail":
        raise RuntimeError("res_start fails after registering its jobs")
    if then == "complete":
        workflow.Complete(incident_id)
    elif then == "cancel":
        workflow.Cancel(incident_id, reason="cancelled by res_start")
    elif then in ("next", "error_next"):
        workflow.send({"IncidentID": incident_id, "fail": then == "error_next",
                       "release": message.get("release", [])}, "res_next")


@workflow.handler
def res_next(message):
    """Release message["release"] (the jobs finished), then fail or complete."""
    incident_id = message["IncidentID"]
    for ref in message.get("release", []):
        workflow.ReleaseResource(incident_id, ref)
    if message.get("fail"):
        raise RuntimeError("res_next fails: the incident ends ERROR")
    workflow.Complete(incident_id)


@workflow.handler
def res_cancel_job(message):
    """The release handler: cancel the job in the fake scheduler."""
    resource = message["Resource"]
    root, ref = Path(resource["data"]["root"]), resource["ref"]
    with open(root / "calls.log", "a") as calls:
        calls.write(f"{ref} {message['MessageID']}\n")
    if (root / "fail").exists():
        raise RuntimeError(f"the fake scheduler refuses to cancel {ref}")
    if (root / "fail_once").exists():
        (root / "fail_once").unlink()
        raise RuntimeError(f"the fake scheduler is busy; cancel {ref} later")
    (root / "cancelled").mkdir(exist_ok=True)
    (root / "cancelled" / ref).touch(exist_ok=True)
    if (root / "block").exists():
        deadline = time.monotonic() + 120
        while not (root / "unblock").exists() and time.monotonic() < deadline:
            time.sleep(0.05)


def RegisterHandlers():
    workflow.RegisterHandler(res_start, "res_start")
    workflow.RegisterHandler(res_next, "res_next")
    workflow.RegisterHandler(res_cancel_job, RELEASE_QUEUE)
    workflow.RegisterHandler(res_cancel_job, FLAKY_RELEASE_QUEUE, retries=2, retry_backoff=1.0)
