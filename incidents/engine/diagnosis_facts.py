"""The facts a diagnosis judges (engine/diagnosis.py): the incident's waiting messages per
queue and who consumes them, its runs and their handlers' usual durations, its locks and lock
waits, its cleanup and its dead letters. Reading them is all the I/O a diagnosis does."""
from __future__ import annotations

import statistics
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, Max, Q
from django.utils import timezone

from incidents.engine import deadletter, locks, queue_consumers, registry, releases
from incidents.engine.queue_consumers import QueueConsumers
from incidents.models import (
    LIVE_INCIDENT_STATUSES,
    WAITING_STATUSES,
    ExternalResource,
    Incident,
    Lock,
    MessageLog,
    MessageStatus,
)

#: Fewer completed runs than this give no usual duration to compare with.
MIN_SAMPLES = 5
SAMPLE_LIMIT, SAME_KIND_INCIDENTS, RUN_LIMIT = 200, 20, 50
#: The dead-letter queue is read up to this many letters (oldest first), then put back.
DEAD_LETTER_SCAN = 100


@dataclass
class Backlog:
    """The incident's messages waiting (QUEUED/SENT) in one queue."""

    queue: str
    by_status: dict[str, int]
    oldest_id: str
    oldest_submitted: datetime
    handler: str | None  # None: no handler for it is registered in this process
    atomic: bool

    @property
    def count(self) -> int:
        return sum(self.by_status.values())


@dataclass
class Run:
    """A message being handled (PROCESSING)."""

    message_id: str
    queue: str
    handler: str | None
    started: datetime
    attempts: int
    consumer: str  # host:pid of the process that claimed it ("" if not recorded)


@dataclass
class Usual:
    median: float | None
    samples: int


@dataclass
class HeldLock:
    label: str
    owner: str
    since: datetime | None  # None where the store does not keep it (Redis)
    expires: datetime | None
    holder_message: str | None = None  # the message whose run holds it
    holder_status: str | None = None


@dataclass
class Facts:
    incident_id: str
    status: str
    created_at: datetime
    ended_at: datetime | None
    cleaned_at: datetime | None
    messages: dict[str, int]  # all of the incident's messages, by status
    last_ended: MessageLog | None  # the message whose handling ended last
    backlog: list[Backlog]
    runs: list[Run]
    usual: dict[str, Usual]  # by queue, for the queues of `runs`
    locks: list[HeldLock]
    lock_store: str  # "database" or "redis"
    cleanup: MessageLog | None  # the latest _Cleanup message
    consumers: dict[str, QueueConsumers]  # by queue, for the queues of `backlog`
    earlier_lock_waits: dict[str, tuple[int, float]]  # queue -> (runs, longest wait)
    dead_letters: list[deadletter.DeadLetter] | None  # this incident's; None: not read
    dead_letters_scanned: int = 0
    dead_letters_error: str = ""
    # Of an ended incident: its resources not yet released (their releases are outstanding).
    outstanding_releases: list[ExternalResource] = field(default_factory=list)


def gather(incident_id: str, *, inspect_timeout: float = queue_consumers.INSPECT_TIMEOUT_SECONDS,
           read_dead_letters: bool = True) -> Facts:
    """Read what a diagnosis needs; asks the broker or the workers once."""
    incident = Incident.objects.get(pk=incident_id)
    log = MessageLog.objects.filter(incident_id=incident.pk).defer("body")  # bodies may be large
    counts = dict(log.order_by().values("status").annotate(n=Count("id")).values_list("status", "n"))
    backlog = _backlog(log)
    runs = [Run(str(m.pk), m.destination, _handler_name(m.destination), m.received or m.submitted,
                m.attempts, m.consumer)
            for m in log.filter(status=MessageStatus.PROCESSING).order_by("received")[:RUN_LIMIT]]
    store, held = _held_locks(str(incident.pk))
    facts = Facts(
        incident_id=str(incident.pk), status=incident.status, created_at=incident.created_at,
        ended_at=incident.completed_at, cleaned_at=incident.cleaned_at, messages=counts,
        last_ended=log.filter(completed__isnull=False).order_by("-completed").first(),
        backlog=backlog, runs=runs,
        usual={queue: _usual_duration(incident, queue) for queue in {r.queue for r in runs}},
        locks=held, lock_store=store,
        cleanup=log.filter(destination=registry.CLEANUP_QUEUE).order_by("-submitted").first(),
        consumers=queue_consumers.ask([b.queue for b in backlog], timeout=inspect_timeout),
        earlier_lock_waits=_earlier_lock_waits(log, [b.queue for b in backlog if b.atomic]),
        dead_letters=None)
    if incident.status not in LIVE_INCIDENT_STATUSES:
        facts.outstanding_releases = list(releases.outstanding(str(incident.pk))
                                          .order_by("registered_at")[:RUN_LIMIT])
    if read_dead_letters and (incident.status in LIVE_INCIDENT_STATUSES or not incident.cleaned_at):
        _read_dead_letters(facts)
    return facts


def _handler_name(queue: str) -> str | None:
    spec = registry.handler_for(queue)
    return spec.name if spec else None


def _backlog(log: Any) -> list[Backlog]:
    # A timer not yet due (send(delay=...)) is not waiting for a worker: it is not a reason.
    waiting = log.filter(Q(not_before__isnull=True) | Q(not_before__lte=timezone.now()),
                         status__in=WAITING_STATUSES)
    by_queue: dict[str, dict[str, int]] = {}
    for queue, status, n in (waiting.order_by().values("destination", "status")
                             .annotate(n=Count("id")).values_list("destination", "status", "n")):
        by_queue.setdefault(queue, {})[status] = n
    found = []
    for queue, by_status in by_queue.items():
        oldest = waiting.filter(destination=queue).order_by("submitted").values_list(
            "id", "submitted").first()
        if oldest is None:
            continue  # handled between the two reads
        spec = registry.handler_for(queue)
        found.append(Backlog(queue, by_status, str(oldest[0]), oldest[1],
                             spec.name if spec else None, bool(spec and spec.atomic)))
    return sorted(found, key=lambda b: b.oldest_submitted)


def _usual_duration(incident: Incident, queue: str) -> Usual:
    """The median handling time of the queue's completed runs: this incident's latest, and
    if too few, those of the latest incidents of its kind (indexed reads only)."""
    def durations(incident_ids: list[Any]) -> list[float]:
        return [d for d in MessageLog.objects.filter(
            incident_id__in=incident_ids, status=MessageStatus.COMPLETE, destination=queue,
            duration__isnull=False).order_by("-completed").values_list("duration", flat=True)
            [:SAMPLE_LIMIT] if d is not None]
    samples = durations([incident.pk])
    if len(samples) < MIN_SAMPLES:
        others = list(Incident.objects.filter(kind=incident.kind).exclude(pk=incident.pk)
                      .order_by("-created_at").values_list("pk", flat=True)[:SAME_KIND_INCIDENTS])
        samples += durations(others)[:SAMPLE_LIMIT - len(samples)]
    return Usual(statistics.median(samples) if len(samples) >= MIN_SAMPLES else None, len(samples))


def _held_locks(incident_id: str) -> tuple[str, list[HeldLock]]:
    backend = locks.backend()
    if isinstance(backend, locks.RedisLocks):
        store, held = "redis", []
        now = timezone.now()
        prefix = locks.RedisLocks._key("", incident_id)  # the store's own key scheme
        for key in backend.client.scan_iter(match=prefix + "*", count=500):
            owner, ttl = backend.client.get(key), backend.client.pttl(key)
            if owner is None:
                continue  # released meanwhile
            label = key.decode()[len(prefix):] if isinstance(key, bytes) else str(key)[len(prefix):]
            expires = now + timedelta(milliseconds=ttl) if ttl and ttl > 0 else None
            held.append(HeldLock(label, owner.decode() if isinstance(owner, bytes) else str(owner),
                                 None, expires))
    else:
        store = "database"
        held = [HeldLock(row.label, row.owner, row.acquired_at, row.expires_at)
                for row in Lock.objects.filter(incident_id=incident_id).order_by("acquired_at")]
    _name_holders(held)
    return store, sorted(held, key=lambda h: h.label)


def _name_holders(held: list[HeldLock]) -> None:
    """A handler run's lock owner is `<MessageID>:<random>`; outside handlers `host:pid:thread`."""
    ids = {}
    for lock in held:
        try:
            ids[lock.label] = str(uuid.UUID(lock.owner.split(":", 1)[0]))
        except ValueError:
            continue
    statuses = dict(MessageLog.objects.filter(pk__in=set(ids.values()))
                    .values_list("id", "status"))
    for lock in held:
        if lock.label in ids:
            lock.holder_message = ids[lock.label]
            lock.holder_status = statuses.get(uuid.UUID(ids[lock.label]))


def _earlier_lock_waits(log: Any, queues: list[str]) -> dict[str, tuple[int, float]]:
    """lock_wait is written by the claim that ends a wait: what earlier deliveries waited."""
    if not queues:
        return {}
    rows = (log.filter(destination__in=queues, lock_wait__isnull=False).order_by().values("destination")
            .annotate(n=Count("id"), longest=Max("lock_wait")))
    return {row["destination"]: (row["n"], row["longest"]) for row in rows}


def _read_dead_letters(facts: Facts) -> None:
    try:
        letters = deadletter.inspect(DEAD_LETTER_SCAN)
    except Exception as exc:  # any transport's error: say the letters are unknown
        facts.dead_letters_error = f"could not read the dead-letter queue ({exc!r:.200})"
        return
    facts.dead_letters_scanned = len(letters)
    facts.dead_letters = [letter for letter in letters if facts.incident_id in letter.body]


