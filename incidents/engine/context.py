"""The running handler's context: what it has staged to commit when it returns."""
from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.utils import timezone

from incidents.models import IncidentStatus

HOST = socket.gethostname()


def consumer() -> str:
    """host:pid of this process (computed on use: pool processes are forked)."""
    return f"{HOST}:{os.getpid()}"


@dataclass
class StagedMessage:
    """A send() waiting for its handler (or FlushMessages) to commit it."""

    id: str
    incident_id: str
    queue: str
    body: dict[str, Any]
    originator: str
    src_tag: str = ""
    dest_tag: str = ""
    not_before: datetime | None = None  # a timer: published no earlier (send(delay=...))
    # Its incident's priority (engine/priority.py); None: read when it is logged
    # (outbox.log_rows), for a message sent outside a handler or to another incident.
    priority: int | None = None


@dataclass
class StagedEnding:
    """A Complete() or Cancel() waiting to commit: the incident's new status and cleanup."""

    incident_id: str
    status: IncidentStatus
    reason: str
    clean_locks: bool = True
    clean_persist: bool = True
    clean_messages: bool = False
    force: bool = False
    by: str = ""  # who ended it: a handler's name, or an operator
    # Set by lifecycle.apply_ending: its held resources' release messages, logged with the
    # cleanup message (engine/releases.py).
    releases: list[StagedMessage] = field(default_factory=list, init=False)


@dataclass
class Staging:
    """Effects staged by one handler run, or by code outside any handler."""

    originator: str = ""
    outbox: list[StagedMessage] = field(default_factory=list)
    # (incident_id, key, data, its JSON text): the text is what the commit stores.
    puts: list[tuple[str, str, Any, str]] = field(default_factory=list)
    endings: list[StagedEnding] = field(default_factory=list)


@dataclass
class HandlerRun(Staging):
    """One run of a handler on one message."""

    message_id: str | None = None
    incident_id: str | None = None
    queue: str | None = None  # the queue the message came from (None: a direct call)
    attempt: int = 0
    # False for a first delivery to a plain handler until its commit (or engine/running.py)
    # claims the message; the commit's fence depends on it.
    claimed: bool = True
    received: datetime = field(default_factory=timezone.now)  # when the run started
    activate: bool = False  # its incident is PENDING: the commit makes it ACTIVE
    priority: int | None = None  # its incident's, read with its message (None: a direct call)
    sends: int = 0
    locks: set[tuple[str, str]] = field(default_factory=set)  # (label, incident_id)
    # Engine-internal effects applied inside the commit that finishes the message (cleanup).
    in_commit: list[Callable[[], None]] = field(default_factory=list)
    lock_owner: str = field(default_factory=lambda: f"run:{uuid.uuid4()}")
    resource_refs: set[tuple[str, str]] = field(default_factory=set)  # RegisterResource()d

    def next_message_id(self) -> str:
        """MessageIDs derived from the message being handled, so a rerun of the same
        handler on a redelivered message produces the same ids and cannot send twice."""
        self.sends += 1
        if self.message_id is None:
            return str(uuid.uuid4())
        return str(uuid.uuid5(uuid.UUID(self.message_id), str(self.sends)))


current_run: ContextVar[HandlerRun | None] = ContextVar("current_run", default=None)
#: The delivery a worker is handling (queue, incident_id, message_id), for log lines.
delivery: ContextVar[dict[str, str] | None] = ContextVar("delivery", default=None)


@contextmanager
def delivering(queue: str, message: Any) -> Iterator[None]:
    ids = message if isinstance(message, dict) else {}
    token = delivery.set({"queue": queue, "incident_id": str(ids.get("IncidentID") or "-"),
                          "message_id": str(ids.get("MessageID") or "-")})
    try:
        yield
    finally:
        delivery.reset(token)


_outside = threading.local()


def outside_staging() -> Staging:
    """Effects staged outside any handler in this thread, waiting for FlushMessages()."""
    staging = getattr(_outside, "staging", None)
    if staging is None:
        staging = _outside.staging = Staging()
    return staging


def staging() -> Staging:
    return current_run.get() or outside_staging()


def process_lock_owner() -> str:
    return f"{consumer()}:{threading.get_ident()}"
