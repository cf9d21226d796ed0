"""A batch job as an external resource: submit it to the (fake) scheduler, register it with
the incident, poll it with timers until it is done, then release it and complete.

If the incident ends first (Cancel, Kill, a handler's error), the engine sends the job, still
held, to `batch_cancel`, whose handler cancels it in the scheduler: nothing keeps running
(and costing) after the incident is gone. The cancel is idempotent, so a retried release
(from the admin) is harmless.

Start it by kind (admin, `manage.py create_incident --kind FAKE_BATCH`) with parameters
    {"poll_seconds": 10, "job_polls": 3}
or with a message to `batch_submit` carrying the same keys beside the IncidentID.
`job_polls`: how many status checks the fake scheduler answers RUNNING before DONE.
"""
import logging

from incidents import workflow
from workflows import batch_scheduler

KIND = "FAKE_BATCH"
RESOURCE_KIND = "batch_job"
DEFAULT_POLL_SECONDS = 10.0
DEFAULT_JOB_POLLS = 3

logger = logging.getLogger(__name__)


@workflow.handler
def submit_handler(message):
    """Submit the job, hold it as the incident's resource, and schedule the first check."""
    incident_id = message["IncidentID"]
    options = {**(message.get("parameters") or {}), **message}
    poll_seconds = float(options.get("poll_seconds", DEFAULT_POLL_SECONDS))
    # Keyed by the incident: a retry of this handler after a crash finds the same job
    # instead of submitting a second one nobody would release.
    job_id = batch_scheduler.submit(f"incident {incident_id}", key=f"{incident_id}/batch",
                                    polls_until_done=int(options.get("job_polls", DEFAULT_JOB_POLLS)))
    workflow.RegisterResource(incident_id, RESOURCE_KIND, job_id, release_queue="batch_cancel",
                              data={"scheduler": "fake", "jobs_dir": str(batch_scheduler.jobs_dir())})
    logger.info("submitted batch job %s for incident %s", job_id, incident_id)
    workflow.send({"IncidentID": incident_id, "job": job_id, "poll_seconds": poll_seconds},
                  "batch_poll", delay=poll_seconds)


@workflow.handler
def poll_handler(message):
    """Check the job: when done, release it and complete; else check again later."""
    incident_id, job_id = message["IncidentID"], message["job"]
    state = batch_scheduler.status(job_id)
    if state == batch_scheduler.DONE:
        workflow.ReleaseResource(incident_id, job_id)  # finished: nothing left to cancel
        workflow.Complete(incident_id)
    elif state == batch_scheduler.CANCELLED:
        raise RuntimeError(f"batch job {job_id} was cancelled in the scheduler, outside "
                           "this incident; resubmit by starting a new incident")
    else:
        workflow.send({"IncidentID": incident_id, "job": job_id,
                       "poll_seconds": message["poll_seconds"]}, "batch_poll",
                      delay=message["poll_seconds"])


@workflow.handler
def cancel_handler(message):
    """The release handler: cancel the incident's job (runs after the incident has ended)."""
    resource = message["Resource"]
    job = batch_scheduler.cancel(resource["ref"])
    logger.info("release of batch job %s for incident %s: %s", resource["ref"],
                message["IncidentID"], job["state"])


def RegisterHandlers():
    workflow.RegisterKind(KIND, queue="batch_submit",
                          description="A fake batch job, polled until done; killing cancels it")
    workflow.RegisterHandler(handler=submit_handler, queue="batch_submit")
    workflow.RegisterHandler(handler=poll_handler, queue="batch_poll")
    workflow.RegisterHandler(handler=cancel_handler, queue="batch_cancel")
