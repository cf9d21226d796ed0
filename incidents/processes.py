"""Start and stop local `celery -A wfproject worker` processes (demo, tests, benchmarks)."""
from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

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


def descendants_of(pid: int) -> list[int]:
    """Children, grandchildren, ... of `pid` (Linux /proc): a command's workers and their pools."""
    found, parents = [], [pid]
    while parents:
        children = [child for parent in parents for child in _children_of(parent)]
        found += children
        parents = children
    return found


#: What a terminal, systemd, Docker, `timeout` and CI send to stop a command.
STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM, signal.SIGHUP})


class Interrupted(BaseException):
    """A stop signal arrived while `interruptible()` was active; a BaseException, like
    KeyboardInterrupt, so that no `except Exception` on the way swallows it."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.signal_name = signal.Signals(signum).name
        super().__init__(f"interrupted by {self.signal_name}")

    @property
    def exit_code(self) -> int:
        """The shell's convention: 128 + the signal's number (130 SIGINT, 143 SIGTERM, 129 SIGHUP)."""
        return 128 + self.signum


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Within: SIGINT, SIGTERM and SIGHUP raise `Interrupted` in the main thread, so that
    `finally` blocks and context managers (a WorkerGroup's stop) run on every way out.
    A signal ignored on entry stays ignored (`nohup`, a background job's SIGINT)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set signal handlers
        return

    def raise_interrupted(signum: int, frame: FrameType | None) -> None:
        raise Interrupted(signum)

    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    for signum, handler in previous.items():
        if handler != signal.SIG_IGN:
            signal.signal(signum, raise_interrupted)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextlib.contextmanager
def _stop_signals_deferred() -> Iterator[None]:
    """Hold stop signals back (they are delivered on exit), so that a worker started here is
    in the group before an `Interrupted` can be raised: no orphan from a signal mid-start.
    (Python runs handlers in the main thread whichever thread the kernel chose: in a parent
    with other threads a signal may still slip in; the worker's PDEATHSIG covers that.)"""
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
# Loaded here, not in the forked child, where as little as possible should run before exec.
_libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def _prepare_worker_process(parent: int, die_with_parent: bool) -> None:
    """Runs in the forked child, before exec."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)  # the mask survives exec
    if die_with_parent and _libc is not None:
        # A SIGKILLed parent (or runserver's os._exit) runs no cleanup: the kernel then sends
        # SIGTERM, and the worker shuts down warm. It fires when the *thread* that forked
        # exits, hence only for workers started from the main thread (see start()).
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before prctl: no signal will come
            os._exit(1)


@dataclass
class WorkerGroup:
    """Worker processes sharing this process's database and broker settings."""

    env: dict[str, str] = field(default_factory=dict)
    workers: list[Worker] = field(default_factory=list)
    #: Appended to each worker's name in its node name (`serve1-4711@host`), so that the
    #: workers of two commands running at once, or of a command and its orphans, never share
    #: a node name (`celery inspect ping` counts nodes by name). Log files keep the short name.
    node_suffix: str = ""

    def start(self, name: str, *, concurrency: int = 1, pool: str = "prefork",
              queues: list[str] | None = None, timeout: float = 60.0,
              app: str = "wfproject", program: list[str] | None = None) -> Worker:
        """Start `celery -A <app> worker` (or `program`, which takes the same options)."""
        log = Path(settings.VAR_DIR) / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text("")
        program = program or [sys.executable, "-m", "celery", "-A", app, "worker"]
        command = [*program, "-n", f"{name}{self.node_suffix}@%h",
                   "-c", str(concurrency), "-P", pool, "-l", "INFO",
                   "--without-mingle", "--without-gossip"]
        if queues:
            command += ["-Q", ",".join(queues)]
        prepare = functools.partial(_prepare_worker_process, os.getpid(),
                                    threading.current_thread() is threading.main_thread())
        with open(log, "ab") as out, _stop_signals_deferred():
            # Own session: a Ctrl+C in the terminal reaches the parent alone, which stops
            # the workers in order (warm), rather than every process at once.
            process = subprocess.Popen(
                command, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                cwd=settings.BASE_DIR, start_new_session=True, preexec_fn=prepare)
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
        """Warm-stop every worker (all at once, then wait for each). Interrupted meanwhile (a
        second Ctrl+C, SIGTERM), it SIGKILLs the rest at once, as Celery's cold shutdown."""
        try:
            for worker in self.workers:
                if worker.process.poll() is None:
                    worker.process.terminate()
            for worker in self.workers:
                worker.stop(timeout)
        except BaseException:
            for worker in self.workers:
                self.kill(worker)
            raise
        finally:
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
