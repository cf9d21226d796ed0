"""The embedded broker: kombu's filesystem transport, made safe for several processes.

kombu writes a message file in place and deletes it as soon as it is read, so a reader can
pick up a half-written file and a process killed before its ack loses the message. Here a
message is written under a hidden name and renamed into the queue folder when complete;
a reader takes it by an atomic rename into the processed folder, under a name that records
the holder, and deletes it only when the message is acked. Messages held by a process that
has died are put back on their queue, marked redelivered.

kombu polls such a transport and sleeps `polling_interval` whenever it gets nothing, also
while its prefetch window is full, so a worker would take at most prefetch-count messages
per interval. Here an ack wakes the poller at once, and the pause after an empty poll
starts at a millisecond and doubles up to `polling_interval` while the queues stay empty.

Messages wait in a folder per queue and priority (`<queue>.q/p<rank>/`, rank 0 the highest),
taken highest priority first, then oldest first: a poll lists only its queue's folders, a
deep queue's listing serves later polls while it lasts, and a message of a higher priority
is seen without listing the deep one. Files written by versions before this layout, directly
in the queue folder, are still delivered (first).
"""
from __future__ import annotations

import contextlib
import fcntl
import itertools
import logging
import os
import socket
import threading
import time
import uuid
from queue import Empty
from time import monotonic
from typing import Any, cast

from celery.worker import state as worker_state
from kombu.transport import filesystem
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads

logger = logging.getLogger(__name__)
HOST = socket.gethostname().replace("~", "-")
RECOVERY_INTERVAL_SECONDS = 5.0
FIRST_PAUSE_SECONDS = 0.001
#: How long a queue's listing may serve later polls (a deep queue is listed only this often).
LISTING_REUSE_SECONDS = 0.5


class _Liveness:
    """Each process holds an exclusive flock on a file named after it for as long as it
    lives; a holder whose file can be locked by someone else is dead. Unlike a pid check,
    this is not fooled by a new process that got the same pid."""

    def __init__(self) -> None:
        self._pid: int | None = None
        self._file: Any = None
        self.name = ""

    def holder(self, folder: str) -> str:
        if self._pid != os.getpid():  # first use in this process (or in a forked child)
            self._pid = os.getpid()
            self.name = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
            self._file = open(os.path.join(folder, f".alive~{HOST}~{self.name}"), "w")  # noqa: SIM115
            fcntl.flock(self._file, fcntl.LOCK_EX)
        return self.name

    @staticmethod
    def is_alive(folder: str, holder: str) -> bool:
        path = os.path.join(folder, f".alive~{HOST}~{holder}")
        try:
            with open(path) as f:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except FileNotFoundError:
            return False
        except BlockingIOError:
            return True
        os.remove(path)  # we got its lock: its process is gone
        return False


_liveness = _Liveness()
_puts = itertools.count()


def _mark_redelivered(payload: dict[str, Any]) -> dict[str, Any]:
    # Celery reads the flag from delivery_info; kombu's virtual transports set it elsewhere.
    payload["redelivered"] = True
    payload.setdefault("properties", {}).setdefault("delivery_info", {})["redelivered"] = True
    return payload


class Channel(filesystem.Channel):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._held: dict[str, str] = {}  # delivery tag -> file in the processed folder
        self._no_ack: set[str] = set()  # queues consumed without acks (Celery's pidbox)
        self._recovered_at = 0.0
        self._legacy: dict[str, list[str]] | None = None  # queue -> files, this cycle
        # folder -> (when listed, its message files not yet tried, oldest first)
        self._listings: dict[str, tuple[float, list[str]]] = {}
        self._listed_this_cycle: set[str] = set()
        self._made: set[str] = set()  # folders this channel knows exist

    def forget_listing(self) -> None:
        self._legacy = None
        self._listed_this_cycle.clear()

    def _exchange_file(self, exchange: str) -> Any:
        # A queue's exchange has its name, which may hold ':'; kombu refuses that in a file
        # name. Such a name is stored hex-encoded behind '-', which starts no queue name.
        if ":" in exchange:
            exchange = "-" + exchange.encode().hex()
        return super()._exchange_file(exchange)  # type: ignore[misc]  # not in the stubs

    def _folder(self, queue: str, rank: int) -> str:
        """Where `queue`'s messages of priority rank `rank` (0 the highest) wait: a folder per
        queue and rank, so a poll lists only its queue's files and reaches a long queue of
        lower priority only when nothing of a higher one waits."""
        if "/" in queue or queue.startswith("."):
            queue = "-" + queue.encode().hex()
        return os.path.join(self.data_folder_in, f"{queue}.q", f"p{rank}")

    def _ranks(self, queue: str) -> list[str]:
        """The queue's priority folders, highest priority first."""
        base = os.path.dirname(self._folder(queue, 0))
        try:
            return [os.path.join(base, n) for n in sorted(os.listdir(base)) if n[:1] == "p"]
        except FileNotFoundError:
            return []

    def _legacy_files(self, queue: str) -> list[str]:
        """Files of `queue` written before per-queue folders, in the queue folder itself
        (delivered first, oldest first); one listing per polling cycle serves every queue."""
        if self._legacy is None:
            self._legacy = {}
            for name in sorted(os.listdir(self.data_folder_in)):
                if not name.startswith(".") and name.endswith(".msg"):
                    self._legacy.setdefault(name.partition(".")[2][:-4], []).append(
                        os.path.join(self.data_folder_in, name))
        return self._legacy.get(queue, [])

    def _listed(self, folder: str, *, afresh: bool = False) -> list[str]:
        """The folder's message files not yet tried, oldest first. A folder is listed once
        per polling cycle, and a long listing serves later cycles too while it lasts (for
        LISTING_REUSE_SECONDS): files written since sort after it (except a message given
        back, which its own channel lists afresh), and files others took are skipped."""
        cached = self._listings.get(folder)
        if cached is not None and not afresh and (
                folder in self._listed_this_cycle
                or (cached[1] and monotonic() - cached[0] < LISTING_REUSE_SECONDS)):
            return cached[1]
        try:
            names = sorted(n for n in os.listdir(folder)
                           if n.endswith(".msg") and not n.startswith("."))
        except FileNotFoundError:
            names = []
        files = [os.path.join(folder, n) for n in names]
        self._listings[folder] = (monotonic(), files)
        self._listed_this_cycle.add(folder)
        return files

    def _folder_of(self, name: str, payload: Any) -> str:
        """The folder a message file named `name` (by _put, or before priorities) goes back to."""
        queue = name.partition(".")[2].removesuffix(".msg")
        rank = (int(name[1]) if name[:1] == "p" and name[1:2].isdigit()
                else self._get_message_priority(payload, reverse=True))
        return self._folder(queue, rank)

    def _queue_files(self, queue: str) -> list[str]:
        """Every message file of `queue` now (a fresh listing)."""
        self.forget_listing()
        return [*self._legacy_files(queue),
                *(path for folder in self._ranks(queue)
                  for path in self._listed(folder, afresh=True))]

    def _size(self, queue: str) -> int:
        return len(self._queue_files(queue))

    def _purge(self, queue: str) -> int:
        purged = 0
        for path in self._queue_files(queue):
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
                purged += 1
        return purged

    def _write(self, folder: str, name: str, payload: Any) -> None:
        if folder not in self._made:
            os.makedirs(folder, exist_ok=True)
            self._made.add(folder)
        partial = os.path.join(folder, f".{name}.{uuid.uuid4().hex}.part")
        try:
            with open(partial, "wb") as f:
                f.write(str_to_bytes(dumps(payload)))
            os.replace(partial, os.path.join(folder, name))
        except OSError:  # the disk is full (or gone): leave no partial file behind
            with contextlib.suppress(OSError):
                os.remove(partial)
            raise

    def _put(self, queue: str, message: Any, *, first: bool = False,  # type: ignore[override]
             **kwargs: Any) -> None:
        # Files are taken in name order: by priority (as RabbitMQ's priority queues: higher
        # first), then by time, then in the order this process put them; `first` (a message
        # given back) sorts before the rest of its priority.
        stamp = f"{round(monotonic() * 1000):015d}_{next(_puts):012d}"
        if first:
            stamp = f"{'0' * 15}_{stamp}"
        rank = self._get_message_priority(message, reverse=True)  # 0..9, 0 the highest
        folder = self._folder(queue, rank)
        self._write(folder, f"p{rank}_{stamp}_{uuid.uuid4()}.{queue}.msg", message)
        if first:
            self._listings.pop(folder, None)  # it goes before what this channel listed

    def _get(self, queue: str, timeout: float | None = None) -> Any:
        if time.monotonic() - self._recovered_at > RECOVERY_INTERVAL_SECONDS:
            self.recover_abandoned()
        payload = self._take_first(queue, self._legacy_files(queue))
        for folder in self._ranks(queue) if payload is None else ():
            payload = self._take_first(queue, self._listed(folder))
            if payload is None and folder not in self._listed_this_cycle:
                # A listing kept from an earlier cycle ran out (others took the rest):
                # list the folder again before going on to lower priorities.
                payload = self._take_first(queue, self._listed(folder, afresh=True))
            if payload is not None:
                break
        if payload is None:
            raise Empty()
        return payload

    def _take_first(self, queue: str, files: list[str]) -> Any:
        """Take the first of `files` no other consumer took first; its payload, or None."""
        while files:
            path = files.pop(0)
            taken = self._take(path, os.path.basename(path))
            if taken is None:
                continue  # another consumer took it first, or it was not a message
            held, payload = taken
            if queue in self._no_ack:
                os.remove(held)  # never acked: nothing to keep
            else:
                self._held[payload["properties"]["delivery_tag"]] = held
            return payload
        return None

    def basic_get(self, *args: Any, **kwargs: Any) -> Any:
        self.forget_listing()  # a single get, not part of a polling cycle: list afresh
        return super().basic_get(*args, **kwargs)

    def basic_consume(self, queue: str, no_ack: bool, *args: Any, **kwargs: Any) -> Any:
        if no_ack:
            self._no_ack.add(queue)
        return super().basic_consume(queue, no_ack, *args, **kwargs)

    def _take(self, path: str, name: str) -> tuple[str, Any] | None:
        """Move a message file into the processed folder under our holder name and read it;
        None if another process moved it first."""
        held = os.path.join(self.processed_folder,
                            f"{HOST}~{_liveness.holder(self.processed_folder)}~{uuid.uuid4().hex}~{name}")
        try:
            os.rename(path, held)
        except FileNotFoundError:
            return None
        try:
            with open(held, "rb") as f:
                return held, loads(bytes_to_str(f.read()))
        except ValueError:  # not a kombu message (a stray or corrupt file): set it aside
            os.replace(held, os.path.join(self.processed_folder, f".unreadable-{name}"))
            logger.error("embedded broker: %s is not a message; moved to %s/.unreadable-%s",
                         name, self.processed_folder, name)
            return None

    def basic_ack(self, delivery_tag: str, multiple: bool = False) -> None:
        super().basic_ack(delivery_tag, multiple)
        self._forget(delivery_tag)
        self._wake()  # a prefetch slot is free

    def basic_reject(self, delivery_tag: str, requeue: bool = False) -> None:
        try:
            if not requeue:
                self._dead_letter(delivery_tag)
            super().basic_reject(delivery_tag, requeue)
        except OSError as exc:  # dead-lettering could not write: the disk is full
            held = self._held.pop(delivery_tag, None)
            if held:
                self._orphan(held, exc)
            super().basic_reject(delivery_tag, requeue=False)  # it is ours no more
        self._forget(delivery_tag)
        self._wake()

    def _orphan(self, held: str, error: OSError) -> None:
        """Give a held message up to the recovery that returns a dead process's messages to
        their queues (marked redelivered), so it is not stranded with a live holder while
        nothing can be written. A rename needs no free space."""
        host, _, _, name = os.path.basename(held).split("~", 3)
        orphan = os.path.join(self.processed_folder,
                              f"{host}~orphan-{uuid.uuid4().hex}~{uuid.uuid4().hex}~{name}")
        os.rename(held, orphan)
        logger.warning("embedded broker: could not requeue %s (%s); it goes back to its "
                       "queue once the disk has room", name, error)

    def _wake(self) -> None:
        if self.connection is not None:  # None once the channel is closed
            cast("Transport", self.connection).wake()

    def _dead_letter(self, delivery_tag: str) -> None:
        """What RabbitMQ does for the queues' x-dead-letter arguments: move the rejected
        message to the dead-letter queue, noting where it came from and why."""
        from incidents.engine.deadletter import DEAD_LETTER_QUEUE

        held = self._held.get(delivery_tag)
        if held is None:
            return
        name = held.split("~", 3)[3]
        with open(held, "rb") as f:
            payload = loads(bytes_to_str(f.read()))
        headers = payload.setdefault("headers", {}) or {}
        payload["headers"] = headers
        headers["x-first-death-queue"] = name.partition(".")[2].removesuffix(".msg")
        headers["x-first-death-reason"] = "rejected"
        # Requeued from the dead-letter queue, it must go back there, not to its old queue.
        payload.setdefault("properties", {})["delivery_info"] = {
            "exchange": "", "routing_key": DEAD_LETTER_QUEUE}
        self._put(DEAD_LETTER_QUEUE, payload)

    def _restore(self, message: Any) -> None:
        """Put an unacked message back (reject with requeue, channel closed) at the head of
        its queue, as RabbitMQ does: it may hold up others (an @atomic run's lock)."""
        held = self._held.pop(message.delivery_tag, None)  # before the copy can be taken again
        payload = _mark_redelivered(message.serializable())
        try:
            for queue in self._lookup(message.delivery_info["exchange"],
                                      message.delivery_info["routing_key"]):
                self._put(queue, payload, first=True)
        except OSError as exc:  # the disk is full: nothing is lost, recovery requeues it
            if held:
                self._orphan(held, exc)
            return
        if held:
            with contextlib.suppress(FileNotFoundError):
                os.remove(held)

    def _forget(self, delivery_tag: str) -> None:
        held = self._held.pop(delivery_tag, None)
        if held:
            with contextlib.suppress(FileNotFoundError):
                os.remove(held)

    def recover_abandoned(self) -> int:
        """Return messages held by dead processes on this host to their queues."""
        self._recovered_at = time.monotonic()
        recovered = 0
        alive_prefix = f".alive~{HOST}~"
        for held in os.listdir(self.processed_folder):
            if held.startswith(alive_prefix):  # sweep the liveness files of dead processes
                _Liveness.is_alive(self.processed_folder, held[len(alive_prefix):])
                continue
            parts = held.split("~", 3)
            if len(parts) != 4:
                continue
            host, holder, _, name = parts
            if host != HOST or holder == _liveness.name or _Liveness.is_alive(
                    self.processed_folder, holder):
                continue
            # Taken under our own holder name, so it is recovered again if we die too.
            taken = self._take(os.path.join(self.processed_folder, held), name)
            if taken is None:
                continue  # another process is recovering it
            claimed, payload = taken
            try:
                self._write(self._folder_of(name, payload), name, _mark_redelivered(payload))
            except OSError as exc:  # still no room: leave it for a later pass
                os.rename(claimed, os.path.join(self.processed_folder, held))
                logger.warning("embedded broker: cannot requeue %s yet: %s", name, exc)
                break
            os.remove(claimed)
            recovered += 1
        return recovered


def _stopping() -> bool:
    """Has this process's worker been asked to stop? It checks between drains, and should
    not wait out the rest of a 2 s drain (twice) first. The flags hold an exit code: 0 too."""
    return any(flag is not None and flag is not False
               for flag in (worker_state.should_stop, worker_state.should_terminate))


class Transport(filesystem.Transport):
    Channel = Channel
    # A refused message (ChannelError) is not a lost connection. Without these kombu treats
    # every channel error as one, reconnects and publishes again on a closed channel.
    recoverable_connection_errors = filesystem.Transport.connection_errors
    recoverable_channel_errors = ()
    #: Set by the worker's consumer (engine/consumer.py) on its own connection.
    worker_consumer = False
    # Files need no host: without this kombu warns "No hostname was supplied" per connection.
    default_connection_params: dict[str, Any] = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._woken = threading.Event()

    def wake(self) -> None:
        self._woken.set()

    def drain_events(self, connection: Any,  # type: ignore[override]  # stubs disagree
                     timeout: float | None = None) -> None:
        assert self.cycle is not None  # set up with the first channel
        started = monotonic()
        pause, longest = FIRST_PAUSE_SECONDS, self.polling_interval or FIRST_PAUSE_SECONDS
        while True:
            self._woken.clear()
            for channel in self.channels or []:
                cast(Channel, channel).forget_listing()
            try:
                self.cycle.get(self._deliver, timeout=timeout)
                return
            except Empty:
                if (timeout is not None and monotonic() - started >= timeout) or (
                        self.worker_consumer and _stopping()):
                    raise TimeoutError() from None
            woken = self._woken.wait(pause)
            pause = FIRST_PAUSE_SECONDS if woken else min(pause * 2, longest)
