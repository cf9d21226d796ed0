"""A fake batch scheduler: a small local stand-in for an HPC queue (Slurm, PBS), one JSON file
per job under WF_VAR_DIR/fake_scheduler/, safe for several worker processes at once.

A job is QUEUED when submitted, RUNNING from its first status check, and DONE at its
`polls_until_done`-th check; cancel() stops a QUEUED or RUNNING job (CANCELLED) and changes
nothing on a finished one, so a release handler may call it any number of times.

    job_id = submit("fire model", polls_until_done=3, key=incident_id)
    status(job_id)   # "RUNNING"; "DONE" at the third check
    cancel(job_id)   # the job as it is now: CANCELLED unless it had finished
"""
from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

QUEUED, RUNNING, DONE, CANCELLED = "QUEUED", "RUNNING", "DONE", "CANCELLED"
FINISHED = (DONE, CANCELLED)
#: Job ids made from a submit key: the same key (a retried handler's) finds the same job.
KEY_NAMESPACE = uuid.UUID("5a0c3f3e-3c1b-4d7e-9b7a-2f4c8f1e6a10")


class UnknownJob(LookupError):
    """Raised for a job id the scheduler has no file for."""


def jobs_dir() -> Path:
    """Where the job files are kept (read at call time, so tests' WF_VAR_DIR applies)."""
    from django.conf import settings

    directory = Path(settings.VAR_DIR) / "fake_scheduler"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def submit(name: str = "", *, polls_until_done: int = 3, key: str | None = None,
           data: dict[str, Any] | None = None) -> str:
    """Queue a job and return its id. With `key`, submitting again returns the job the key
    already made instead of a second one (a handler retried after a crash submits once)."""
    if polls_until_done < 1:
        raise ValueError(f"submit(): polls_until_done={polls_until_done!r}; give 1 or more")
    job_id = str(uuid.uuid5(KEY_NAMESPACE, key) if key is not None else uuid.uuid4())
    with _locked(job_id):
        if not _path(job_id).exists():
            _write(job_id, {"id": job_id, "name": name, "state": QUEUED, "polls": 0,
                            "polls_until_done": polls_until_done, "data": data or {},
                            "submitted_at": _now(), "finished_at": None})
    return job_id


def status(job_id: str) -> str:
    """Check the job, as a poll would: each check moves it on (QUEUED -> RUNNING -> DONE)."""
    with _locked(job_id):
        job = _read(job_id)
        if job["state"] not in FINISHED:
            job["polls"] += 1
            job["state"] = DONE if job["polls"] >= job["polls_until_done"] else RUNNING
            if job["state"] == DONE:
                job["finished_at"] = _now()
            _write(job_id, job)
        return str(job["state"])


def cancel(job_id: str) -> dict[str, Any]:
    """Cancel the job if it has not finished; return it as it is now (idempotent)."""
    with _locked(job_id):
        job = _read(job_id)
        if job["state"] not in FINISHED:
            job.update(state=CANCELLED, finished_at=_now())
            _write(job_id, job)
        return job


def job(job_id: str) -> dict[str, Any]:
    """The job's file as it is, without counting as a check."""
    with _locked(job_id):
        return _read(job_id)


def jobs() -> list[dict[str, Any]]:
    """Every job, oldest first."""
    found = [json.loads(p.read_text()) for p in jobs_dir().glob("*.json")]
    return sorted(found, key=lambda j: j["submitted_at"])


# -- files: one lock file per job serialises read-modify-write; writes replace atomically --

@contextlib.contextmanager
def _locked(job_id: str) -> Iterator[None]:
    try:
        uuid.UUID(job_id)  # so a job id never names a path outside the folder
    except (TypeError, ValueError):
        raise UnknownJob(f"fake scheduler: {job_id!r} is not a job id (a UUID from submit())") \
            from None
    with open(jobs_dir() / f"{job_id}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _path(job_id: str) -> Path:
    return jobs_dir() / f"{job_id}.json"


def _read(job_id: str) -> dict[str, Any]:
    try:
        return dict(json.loads(_path(job_id).read_text()))
    except FileNotFoundError:
        raise UnknownJob(f"fake scheduler: no job {job_id!r} in {jobs_dir()}; "
                         "was it submitted with another WF_VAR_DIR?") from None


def _write(job_id: str, job: dict[str, Any]) -> None:
    handle, temporary = tempfile.mkstemp(dir=jobs_dir(), prefix=f".{job_id}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as out:
            json.dump(job, out, indent=1)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, _path(job_id))  # readers see the old file or the new, never half
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()
