"""The handler API: the seed workflow manager's names on Celery and Django.

Handler modules import only this::

    from incidents import workflow

    @workflow.handler
    def A_handler(message):
        workflow.send(message=message, queue="B_queue")

    def RegisterHandlers():
        workflow.RegisterHandler(handler=A_handler, queue="A_queue")
"""
from __future__ import annotations

import datetime
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from incidents import standalone  # noqa: F401  (first: sets Django up in a plain script)
from incidents.engine import (
    context,
    contracts,
    dispatch,
    lifecycle,
    locks,
    persist,
    registry,
    resources,
    result_files,
    retrying,
    scratch,
    sending,
    tasks,
    worker,
)
from incidents.engine.validation import (
    check_incident_id,
    check_queue_name,
    check_seconds,
    check_text,
)
from incidents.exceptions import (  # noqa: F401  (re-exported for handler authors)
    LockTimeout,
    MessageError,
    MessageTypeError,
    Retry,
    UnknownIncident,
    UnknownResult,
    WorkflowError,
)
from incidents.models import LIVE_INCIDENT_STATUSES, IncidentStatus

__all__ = [
    "AttachResult", "Cancel", "CheckLock", "CloseConnection", "Complete", "CreateIncident",
    "FlushMessages", "GetLock", "IncidentDir", "IsLocked", "OpenConnection", "OpenResult",
    "Persist", "RegisterHandler", "RegisterKind", "RegisterResource", "ReleaseLock",
    "ReleaseResource", "Retry", "SetLoggingLevel",
    "WorkflowError", "atomic", "execute", "handler", "logger", "send", "setIncidentActive",
]

#: The original's module logger, which its handlers and self-test log with.
logger = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Any]


def handler(func: Handler) -> Handler:
    """Make `func(message)` a workflow handler.

    Calling the result directly runs it in a handler context: its sends, Persist.Put()s and
    Complete/Cancel commit when it returns, and are discarded if it raises.
    """
    return dispatch.mark_handler(func)


def atomic(func: Handler) -> Handler:
    """Let at most one run of this handler per incident happen at a time, on any worker.

    A message that finds the handler busy goes back to its queue and is retried after a
    short, growing delay. Put it above @workflow.handler (either order works).
    """
    if registry.spec_of(func) is not None:
        return dispatch.mark_handler(func, atomic=True)
    func.__workflow_atomic__ = True  # type: ignore[attr-defined]
    return func


def RegisterHandler(handler: Handler, queue: str, time_limit: float | None = None, *,
                    retries: int = 0, retry_backoff: float = 2.0,
                    retry_on: type[BaseException] | tuple[type[BaseException], ...] = (Exception,),
                    schema: dict[str, Any] | None = None) -> None:
    """Bind a handler to a named queue: RegisterHandler(handler=A_handler, queue="A_queue").

    `time_limit` (seconds) overrides WORKFLOW_HANDLER_TIME_LIMIT_SECONDS for this queue: a
    run that takes longer is stopped and logged ERROR (prefork workers only).
    `retries`: a run that raises one of `retry_on` is retried up to this many times, its
    effects discarded, after retry_backoff ** (n-1) seconds (+-25%, at most 10 minutes);
    `raise workflow.Retry(delay=...)` retries even without it (up to 3 times).
    `schema`: a JSON Schema the queue's messages must match, as the handler sees them (with
    IncidentID, MessageID and originator); send() refuses one that does not.

        workflow.RegisterHandler(fetch, "fetch_data", retries=3, retry_on=ConnectionError)
    """
    check_queue_name(queue)
    policy = retrying.policy(retries, retry_backoff, retry_on, queue)
    validator = None if schema is None else contracts.compile_schema(schema, queue)
    if registry.register(handler, queue, time_limit=time_limit, retry=policy,
                         schema=validator):
        tasks.bind_queue(queue, time_limit)


def RegisterKind(kind: str, queue: str, description: str = "") -> None:
    """Declare that incidents of `kind` start with a message to `queue`, so operators can
    start one by kind alone (admin, `manage.py create_incident --kind`). The first message
    is {"IncidentID": ..., "parameters": <the incident's parameters>}.

        workflow.RegisterKind("QUICKSORT", queue="quicksort_start")
    """
    check_queue_name(queue)
    registry.register_kind(kind, queue, description)


def send(message: Any = None, queue: Any = None, src_tag: str = "", dest_tag: str = "",
         providedCaller: str | None = None, *, delay: float | None = None,
         not_before: datetime.datetime | None = None) -> str | None:
    """Queue `message` (a dict with an IncidentID) for `queue`; return its MessageID.

    Inside a handler it goes out when the handler returns; outside, at FlushMessages().
    `send(queue, message)` also works. A message to an incident that has ended is dropped
    with a warning and None is returned. The message's `originator` is the sending handler's
    name ("" outside any handler), or `providedCaller` when given, as external services tag
    their callbacks:

        workflow.send(message={"IncidentID": incident_id, "n": 1}, queue="B_queue")
        workflow.send(message, "wildfire_results", providedCaller="Simulation Completed")

    A timer: with `delay` (seconds) or `not_before` (an aware datetime) the message is
    committed with the handler like any other but delivered no earlier than that time, even
    across worker and broker restarts; a Cancel or Kill of its incident drops it. Poll with
    it instead of sleeping in a handler:

        workflow.send({"IncidentID": incident_id, "job": job_id}, "poll_job", delay=30)
    """
    return sending.send(message, queue, src_tag, dest_tag, providedCaller, delay=delay,
                        not_before=not_before)


def FlushMessages() -> int:
    """Send the queued messages now; return how many were sent."""
    return sending.flush()


def _incident_arg(IncidentID: Any, incident: Any, where: str) -> Any:
    """The incident id given positionally, as IncidentID= or as the original's incident=."""
    if (IncidentID is None) == (incident is None):
        raise MessageTypeError(f"{where}: give the incident id once, as the first argument, "
                               "IncidentID= or incident=")
    return IncidentID if incident is None else incident


class Persist:
    """Per-incident JSON state of the calling handler."""

    @staticmethod
    def Put(IncidentID: Any = None, data: Any = None, key: str = "", *,
            incident: Any = None) -> None:
        """Store `data` for this incident and handler (committed when the handler returns).
        `incident=` is the original's name for the id. An optional `key` (an extension of
        the seed) files it for Get(key=...).

        Siblings may fan in without @atomic, as in the original: Put your part, then Get
        all parts and go on if they are all there. A handler's first Put waits for a
        sibling between its own first Put and its commit, so the last sibling sees every
        part and it alone goes on.

            workflow.Persist.Put(incident=incident_id, data={"position": 3, "x": part})
        """
        persist.put(_incident_arg(IncidentID, incident, "Persist.Put()"), data, key)

    @staticmethod
    def Get(IncidentID: Any = None, ignoreOriginator: bool = False, key: str | None = None, *,
            incident: Any = None) -> list[Any]:
        """Return this handler's Put()s for the incident in order (every handler's with
        ignoreOriginator=True), including those made earlier in the running handler; with
        `key`, only those Put with that key (a fan-in reads its siblings, not everything)."""
        return persist.get(_incident_arg(IncidentID, incident, "Persist.Get()"),
                           ignoreOriginator, key)


def CreateIncident(name: str, kind: str, incident_date: Any = None, user_id: Any = None,
                   upper_left_latlong: str = "", lower_right_latlong: str = "",
                   duration: Any = None, *, parameters: dict[str, Any] | None = None,
                   priority: Any = None) -> str:
    """Declare an incident (status PENDING) and return its IncidentID.

    The original's signature: `user_id` is the owner, the two corners ("lat,long") bound the
    area, `duration` is how long it runs (a number, e.g. hours, or text). `parameters` (an
    extension) is a JSON dict kept with the incident. `priority` (an extension): "low",
    "normal" (the default), "high" or "urgent", or 0-3; every message of the incident
    carries it, and waiting messages of a higher priority are delivered first.

        incident_id = workflow.CreateIncident("Ridge fire", "WILDFIRE", None, "alice",
                                              "38.6,-120.5", "38.1,-119.9", 24)
    """
    return lifecycle.create_incident(
        name, kind, incident_date, parameters, owner=user_id, upper_left=upper_left_latlong,
        lower_right=lower_right_latlong, duration=duration, priority=priority)


def _IsActive(IncidentID: Any) -> bool:
    """True while the incident is PENDING or ACTIVE (the original's name, used by its
    external services); raises UnknownIncident for an id no incident has."""
    incident_id = check_incident_id(IncidentID, where="_IsActive()")
    return lifecycle.incidents_db.require(incident_id, where="_IsActive()") in \
        LIVE_INCIDENT_STATUSES


def setIncidentActive(IncidentID: str) -> bool:
    """Mark a PENDING incident ACTIVE (it also happens when its first message is handled)."""
    return lifecycle.set_active(IncidentID)


def Complete(IncidentID: str, CleanLocks: bool = True, CleanPersist: bool = True,
             CleanMessages: bool = False, force: bool = False) -> None:
    """End the incident as COMPLETE and request its cleanup.

    Cleanup waits until none of the incident's messages is in flight (force=True: at once),
    then removes its locks (CleanLocks), persisted state (CleanPersist) and message log
    (CleanMessages). Outside a handler, call FlushMessages() to send the cleanup request.
    """
    lifecycle.stage_ending(IncidentID, IncidentStatus.COMPLETE, "", where="Complete()",
                           clean_locks=CleanLocks, clean_persist=CleanPersist,
                           clean_messages=CleanMessages, force=force)


def Cancel(IncidentID: str, reason: str = "", status: str = "CANCELLED", CleanLocks: bool = True,
           CleanPersist: bool = True, CleanMessages: bool = False, force: bool = False) -> None:
    """End the incident as CANCELLED (or another end `status`) with a reason; see Complete()."""
    lifecycle.stage_ending(IncidentID, status, reason, where="Cancel()",
                           clean_locks=CleanLocks, clean_persist=CleanPersist,
                           clean_messages=CleanMessages, force=force)


def RegisterResource(IncidentID: str, kind: str, ref: str, release_queue: str | None = None,
                     data: Any = None) -> None:
    """Record something the incident holds outside (an HPC job, a transfer, a subscription),
    so that its end releases it: when the incident ends in any way (Complete, Cancel, Kill,
    ERROR), a message {"IncidentID", "Resource": {"id", "kind", "ref", "data"}, ...} goes to
    `release_queue`, whose handler (a plain handler, run although the incident has ended)
    cancels it; without a release_queue it is only marked released. `ref` (up to 500
    characters) is unique within the incident: registering it again updates its kind, queue
    and data. `data`: JSON the release handler needs. Inside a handler it is part of the
    handler's commit (a failing run registers nothing); outside, it commits at once. (An
    extension of the seed.)

        job_id = scheduler.submit(script)
        workflow.RegisterResource(incident_id, "hpc_job", job_id, release_queue="cancel_job",
                                  data={"cluster": "hpc1"})
    """
    resources.register(IncidentID, kind, ref, release_queue, data)


def ReleaseResource(IncidentID: str, ref: str) -> None:
    """Mark a registered resource released (the job finished, the transfer is done), so the
    incident's end does not release it; part of the handler's commit, like RegisterResource.
    An unknown ref raises MessageError.

        workflow.ReleaseResource(incident_id, job_id)
    """
    resources.release(IncidentID, ref)


def IncidentDir(IncidentID: str) -> Path:
    """The incident's scratch directory (created on first use), for temporary files such as
    the seed's hotspots/. The incident's cleanup removes it on Complete, Cancel or Kill:
    attach what is to be kept with AttachResult(). (An extension of the seed.)"""
    incident_id = check_incident_id(IncidentID, where="IncidentDir()")
    status = lifecycle.incidents_db.require(incident_id, where="IncidentDir()")
    if status not in LIVE_INCIDENT_STATUSES:  # its cleanup has run, or will not wait for us
        raise MessageError(f"IncidentDir(): incident {incident_id} has ended ({status}); "
                           "its scratch directory goes with its cleanup", incident_id=incident_id)
    return scratch.directory(incident_id)


def AttachResult(IncidentID: str, path_or_name: str | Path, data: bytes | str | None = None, *,
                 title: str = "", content_type: str | None = None) -> str:
    """Attach a result file to the incident and return its name: the file at a path (as it
    is now), or `data` (bytes, or text stored as UTF-8) under a name. Results outlive the
    incident's cleanup (unlike IncidentDir) until WORKFLOW_RESULTS_RETENTION_DAYS after it
    ends, and show on its page in the admin: images inline, other files as downloads.
    Attaching a name again replaces that result. Inside a handler the file is stored when
    the handler returns, and not at all if it raises; outside a handler, at once. (An
    extension of the seed.)

        workflow.AttachResult(incident_id, workflow.IncidentDir(incident_id) / "map.png",
                              title="Burnt area after pass 1")
        workflow.AttachResult(incident_id, "summary.json", json.dumps(summary))
    """
    return result_files.attach(IncidentID, path_or_name, data, title=title,
                               content_type=content_type)


def OpenResult(IncidentID: str, name: str) -> Any:
    """The incident's result file `name` (attached by a handler that has returned), open
    for reading in binary mode; raises UnknownResult (a LookupError) naming those it has.

        with workflow.OpenResult(incident_id, "map.png") as f:
            data = f.read()
    """
    return result_files.open_result(IncidentID, name)


def _lock_args(label: Any, IncidentID: Any, where: str) -> tuple[str, str, str]:
    check_text(label, where=where, name="label", max_length=150, empty_ok=False)
    incident_id = check_incident_id(IncidentID, where=where)
    lifecycle.incidents_db.require(incident_id, where=where)
    run = context.current_run.get()
    return label, incident_id, run.lock_owner if run else context.process_lock_owner()


def _held_by_run(label: str, incident_id: str) -> None:
    """A lock taken inside a handler is given back when the handler returns."""
    run = context.current_run.get()
    if run is not None:
        run.locks.add((label, incident_id))


def GetLock(label: str, IncidentID: str, timeout: float | None = None) -> None:
    """Wait until this caller holds the lock `label` for the incident.

    Raises LockTimeout after `timeout` seconds. Locks a handler holds are released when it
    returns; every lock has a lease (WORKFLOW_LOCK_LEASE_SECONDS) so a dead holder cannot
    block the incident for ever.
    """
    label, incident_id, owner = _lock_args(label, IncidentID, "GetLock()")
    if timeout is not None:
        timeout = check_seconds(timeout, where="GetLock()", name="timeout")
    if not locks.wait_for(label, incident_id, owner, timeout):
        raise LockTimeout(f"GetLock(): lock {label!r} of incident {incident_id} still held "
                          f"after {timeout} s", incident_id=incident_id)
    _held_by_run(label, incident_id)


def CheckLock(label: str, IncidentID: str) -> bool:
    """Take the lock `label` for the incident if it is free and return True; else return
    False at once (the original's try-acquire). Release it with ReleaseLock()."""
    label, incident_id, owner = _lock_args(label, IncidentID, "CheckLock()")
    if not locks.take(label, incident_id, owner):
        return False
    _held_by_run(label, incident_id)
    return True


def IsLocked(label: str, IncidentID: str) -> bool:
    """Return True if someone holds the lock `label` for the incident (never takes it)."""
    label, incident_id, _ = _lock_args(label, IncidentID, "IsLocked()")
    return locks.backend().is_locked(label, incident_id)


def ReleaseLock(label: str, IncidentID: str) -> bool:
    """Release a lock this caller holds; False if it held none."""
    label, incident_id, owner = _lock_args(label, IncidentID, "ReleaseLock()")
    run = context.current_run.get()
    if run is not None:
        run.locks.discard((label, incident_id))
    return locks.give_back(label, incident_id, owner)


def OpenConnection() -> None:
    """Check the broker is reachable (a few tries); raise BrokerUnavailable if not."""
    worker.open_connection()


def CloseConnection() -> None:
    """Close this process's broker connections."""
    worker.close_connection()


def execute(concurrency: int | None = None) -> None:
    """Run a worker for every registered queue in this process until Ctrl+C."""
    worker.execute(concurrency)


def SetLoggingLevel(level: int | str) -> None:
    """Set the level of the workflow engine's log (e.g. logging.DEBUG or "DEBUG")."""
    logging.getLogger("incidents").setLevel(level)
