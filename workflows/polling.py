"""Polling an external job with durable timers: submit it, then check it every
`poll_seconds` by sending to yourself with send(delay=...), never sleeping in a handler.

A sleeping handler holds a worker process (and its message) for as long as the job runs,
and a worker restart loses the wait; a delayed send holds nothing: the poll waits in the
message log until it is due, across worker and broker restarts, and a Cancel drops it.

Start it with a message to `polling_start`:
    {"IncidentID": ..., "poll_seconds": 30, "job_polls": 3}
`job_polls`: how many status checks the stand-in job service answers "running" before "done".
"""
import json
import uuid

from incidents import workflow

DEFAULT_POLL_SECONDS = 30.0


# -- a stand-in for an external job service: one JSON file per job in the incident's folder --

def submit_job(incident_id, polls_until_done):
    """Submit a job; return its id. It reports done at its `polls_until_done`-th check."""
    job_id = str(uuid.uuid4())
    _job_file(incident_id, job_id).write_text(json.dumps(
        {"state": "running", "checks": 0, "done_after": polls_until_done}))
    return job_id


def job_state(incident_id, job_id):
    """Check the job: "running" or "done"."""
    path = _job_file(incident_id, job_id)
    job = json.loads(path.read_text())
    job["checks"] += 1
    if job["checks"] >= job["done_after"]:
        job["state"] = "done"
    path.write_text(json.dumps(job))
    return job["state"]


def _job_file(incident_id, job_id):
    return workflow.IncidentDir(incident_id) / f"job-{job_id}.json"


# -- the workflow ---------------------------------------------------------------------------

@workflow.handler
def polling_start_handler(message):
    """Submit the job and schedule the first check."""
    poll_seconds = float(message.get("poll_seconds", DEFAULT_POLL_SECONDS))
    job_id = submit_job(message["IncidentID"], int(message.get("job_polls", 3)))
    workflow.send({"IncidentID": message["IncidentID"], "job": job_id,
                   "poll_seconds": poll_seconds}, "polling_check", delay=poll_seconds)


@workflow.handler
def polling_check_handler(message):
    """Check the job: Complete when done, else check again in poll_seconds."""
    incident_id = message["IncidentID"]
    if job_state(incident_id, message["job"]) == "done":
        workflow.Complete(incident_id)
        return
    workflow.send({"IncidentID": incident_id, "job": message["job"],
                   "poll_seconds": message["poll_seconds"]}, "polling_check",
                  delay=message["poll_seconds"])


def RegisterHandlers():
    # No RegisterKind: start it with a message to polling_start (see the docstring).
    workflow.RegisterHandler(handler=polling_start_handler, queue="polling_start")
    workflow.RegisterHandler(handler=polling_check_handler, queue="polling_check")
