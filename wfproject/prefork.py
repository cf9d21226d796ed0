"""Celery's prefork pool, with pipe locks that die with their holder.

Over a transport without an event loop (the embedded broker) Celery runs billiard's blocking
pool: its children share one job pipe, and an idle child waits for the next job *holding*
the pipe's lock (a semaphore). A child killed while waiting (the OOM killer, an operator, a
chaos test) leaves that lock taken for ever: no child reads a job again and the worker
wedges with every process alive. Here the pipes' locks are flock()s, which the kernel
releases when their holder dies. Over RabbitMQ Celery uses its asynchronous pool, which has a
pipe per child and is left as it is.
"""
from __future__ import annotations

import fcntl
import os
import tempfile
from typing import Any

from billiard import pool as billiard_pool
from celery.concurrency import prefork


class FlockLock:
    """A lock between the processes forked from its creator, released if its holder dies.

    flock() belongs to an open file description, which a fork shares, so each process opens
    the (already unlinked) file anew through the descriptor it inherited.
    """

    def __init__(self) -> None:
        self._inherited, path = tempfile.mkstemp(prefix="workflow-pool-lock-")
        os.unlink(path)
        self._pid: int | None = None
        self._fd = -1

    def _own_fd(self) -> int:
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._fd = os.open(f"/proc/self/fd/{self._inherited}", os.O_RDONLY)
        return self._fd

    def acquire(self, block: bool = True, timeout: float | None = None) -> bool:
        fcntl.flock(self._own_fd(), fcntl.LOCK_EX)
        return True

    def release(self) -> None:
        fcntl.flock(self._own_fd(), fcntl.LOCK_UN)

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


class BlockingPool(billiard_pool.Pool):
    def _setup_queues(self) -> None:
        super()._setup_queues()  # type: ignore[misc]  # billiard's internals are not in the stubs
        pool: Any = self
        # billiard's pipes, with locks a dead child cannot keep.
        for queue in (pool._inqueue, pool._outqueue):
            queue._rlock, queue._wlock = FlockLock(), FlockLock()


class TaskPool(prefork.TaskPool):
    """`worker_pool` in celeryconfig; `-P prefork` picks it up."""

    BlockingPool = BlockingPool
