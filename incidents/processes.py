"""Start and stop local `celery -A wfproject worker` processes (demo, tests, benchmarks)."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.db import connection

from incidents.engine import celery_app
from incidents.exceptions import WorkflowError


def database_url() -> str:
    """A DATABASE_URL for the database this process uses (the test database under pytest)."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    if db["ENGINE"].endswith("postgresql"):
        password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
        return (f"postgres://{db['USER']}{password}@{db['HOST'] or '127.0.0.1'}:"
                f"{db['PORT'] or 5432}/{db['NAME']}")
    raise WorkflowError(f"cannot pass database engine {db['ENGINE']!r} to a worker process")


@dataclass
class Worker:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self, timeout: float = 30.0) -> None:
        """Warm shutdown: SIGTERM to the main process, which stops its pool itself (a TERM to
        the whole group killed pool processes under it, and its join could hang), then
        SIGKILL whatever of its group is left."""
        if self.process.poll() is None:
            self.process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=timeout)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=timeout)

    def rss_megabytes(self) -> float:
        """Resident memory of the worker and its pool processes, in MB (Linux /proc)."""
        total = 0
        for pid in [self.process.pid, *_children_of(self.process.pid)]:
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue  # it exited meanwhile
            total += sum(int(line.split()[1]) for line in status.splitlines()
                         if line.startswith("VmRSS:"))
        return total / 1024


def _children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@dataclass
class WorkerGroup:
    """Worker processes sharing this process's database and broker settings."""

    env: dict[str, str] = field(default_factory=dict)
    workers: list[Worker] = field(default_factory=list)

    def start(self, name: str, *, concurrency: int = 1, pool: str = "prefork",
              queues: list[str] | None = None, timeout: float = 60.0,
              app: str = "wfproject", program: list[str] | None = None) -> Worker:
        """Start `celery -A <app> worker` (or `program`, which takes the same options)."""
        log = Path(settings.VAR_DIR) / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text("")
        program = program or [sys.executable, "-m", "celery", "-A", app, "worker"]
        command = [*program, "-n", f"{name}@%h",
                   "-c", str(concurrency), "-P", pool, "-l", "INFO",
                   "--without-mingle", "--without-gossip"]
        if queues:
            command += ["-Q", ",".join(queues)]
        with open(log, "ab") as out:
            process = subprocess.Popen(command, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                       cwd=settings.BASE_DIR, start_new_session=True)
        worker = Worker(name, process, log)
        self.workers.append(worker)
        deadline = time.monotonic() + timeout
        while " ready." not in worker.log_text():
            if process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise WorkflowError(f"worker {name} did not start; its log:\n{worker.log_text()}")
            time.sleep(0.1)
        return worker

    def kill(self, worker: Worker) -> None:
        """SIGKILL the worker and its pool processes: no chance to ack or clean up."""
        with contextlib.suppress(ProcessLookupError):  # all of them may have died already
            os.killpg(worker.process.pid, signal.SIGKILL)
        worker.process.wait(timeout=30)

    def stop(self, timeout: float = 30.0) -> None:
        for worker in self.workers:  # all at once, then wait for each
            if worker.process.poll() is None:
                worker.process.terminate()
        for worker in self.workers:
            worker.stop(timeout)
        self.workers.clear()

    def __enter__(self) -> WorkerGroup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def worker_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a worker that shares this process's database, broker and var/."""
    app = celery_app.get()
    env = {**os.environ, "DATABASE_URL": database_url(), "WF_VAR_DIR": str(settings.VAR_DIR),
           "CELERY_BROKER_URL": app.conf.broker_url,
           "WORKFLOW_MODULES": ",".join(settings.WORKFLOW_MODULES)}
    env.update(extra or {})
    return env
