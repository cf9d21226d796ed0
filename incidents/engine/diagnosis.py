"""Why an incident is not moving: every reason found, each with its evidence, its age and
what it names (`manage.py diagnose_incident`, the admin's "Why is it not moving?").

`gather()` reads the facts (the log, the locks, the broker, the workers); `reasons()` is a
pure function of them; `diagnose()` does both.
"""
from __future__ import annotations

import statistics
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, Max
from django.utils import timezone

from incidents import conf
from incidents.engine import deadletter, locks, queue_consumers, registry
from incidents.engine.queue_consumers import QueueConsumers
from incidents.models import (
    FINAL_STATUSES,
    IN_FLIGHT_STATUSES,
    LIVE_INCIDENT_STATUSES,
    WAITING_STATUSES,
    Incident,
    IncidentStatus,
    Lock,
    MessageLog,
    MessageStatus,
)
from incidents.templatetags.incident_format import human_duration, timestamp

# Kinds of reason, in the order they are listed.
NOTHING_IN_FLIGHT = "nothing_in_flight"
CLEANUP_WAITING = "cleanup_waiting"
CLEANUP_MISSING = "cleanup_missing"
QUEUE_WITHOUT_CONSUMER = "queue_without_consumer"
MESSAGES_WAITING = "messages_waiting"
LONG_RUN = "long_run"
LOCK_HELD = "lock_held"
LOCK_WAIT = "lock_wait"
DEAD_LETTERS = "dead_letters"

#: A run is long when it lasts LONG_FACTOR times its queue's median, and never under
#: LONG_FLOOR_SECONDS (shorter runs are the incident moving).
LONG_FACTOR, LONG_FLOOR_SECONDS = 3.0, 5.0
#: Fewer completed runs than this give no usual duration to compare with.
MIN_SAMPLES = 5
SAMPLE_LIMIT, SAME_KIND_INCIDENTS, RUN_LIMIT = 200, 20, 50
#: The dead-letter queue is read up to this many letters (oldest first), then put back.
DEAD_LETTER_SCAN = 100


@dataclass(frozen=True)
class Target:
    """What a reason names: `message_log` (params incident, queue, status), `message` (id),
    `locks` (incident) or `dead_letters` (no admin page: a command)."""

    page: str
    params: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        p = self.params
        if self.page == "message":
            return f"message {p['id']}"
        if self.page == "locks":
            return "the incident's locks"
        if self.page == "dead_letters":
            return "`manage.py dead_letters`"
        where = f" of queue {p['queue']}" if p.get("queue") else ""
        statuses = p.get("status", "").replace(",", ", ")
        return f"the message log{where}" + (f" ({statuses})" if statuses else "")


def _message_log(incident_id: str, queue: str = "", statuses: tuple[str, ...] = ()) -> Target:
    params = {"incident": incident_id, "queue": queue, "status": ",".join(statuses)}
    return Target("message_log", {k: v for k, v in params.items() if v})


def _message(message_id: str) -> Target:
    return Target("message", {"id": message_id})


@dataclass
class Reason:
    kind: str
    summary: str
    evidence: dict[str, Any]
    since: datetime | None  # when what it says began; None: not known
    target: Target

    def age(self, now: datetime) -> float | None:
        return None if self.since is None else max(0.0, (now - self.since).total_seconds())

    def as_json(self, now: datetime) -> dict[str, Any]:
        return {"kind": self.kind, "summary": self.summary, "evidence": self.evidence,
                "since": self.since.isoformat() if self.since else None,
                "age_seconds": self.age(now),
                "target": {"page": self.target.page, **self.target.params}}


# -- the facts --------------------------------------------------------------------------

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
    if read_dead_letters and (incident.status in LIVE_INCIDENT_STATUSES or not incident.cleaned_at):
        _read_dead_letters(facts)
    return facts


def _handler_name(queue: str) -> str | None:
    spec = registry.handler_for(queue)
    return spec.name if spec else None


def _backlog(log: Any) -> list[Backlog]:
    waiting = log.filter(status__in=WAITING_STATUSES)
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


# -- the reasons ------------------------------------------------------------------------

def reasons(facts: Facts, now: datetime, *, long_floor: float = LONG_FLOOR_SECONDS) -> list[Reason]:
    """Every reason the facts show for the incident not moving, most decisive first."""
    live = facts.status in LIVE_INCIDENT_STATUSES
    if not live and facts.cleaned_at is not None:
        return []  # ended and cleaned up: nothing is meant to move
    found = []
    if live and not facts.backlog and not facts.runs:
        found.append(_nothing_in_flight(facts))
    if not live:
        found.append(_cleanup(facts))
    found += [_waiting(facts, b) for b in facts.backlog]
    found += [r for r in (_long_run(facts, run, now, long_floor) for run in facts.runs) if r]
    for lock in facts.locks:
        found.append(_lock_held(facts, lock))
        found += [r for r in [_lock_wait(facts, lock)] if r]
    found += [r for r in [_dead_letters(facts)] if r]
    return found


def _nothing_in_flight(facts: Facts) -> Reason:
    last = facts.last_ended
    evidence: dict[str, Any] = {"status": facts.status, "messages": facts.messages}
    if last is not None:
        evidence["last_message"] = {"id": str(last.pk), "queue": last.destination,
                                    "status": last.status, "ended": last.completed}
    if facts.status == IncidentStatus.PENDING:
        summary = ("nothing will ever happen: no message is in flight and no handler has "
                   "started; send the incident its first message, or cancel it")
    else:
        summary = ("nothing will ever happen: no message is in flight; the graph ended "
                   "without Complete")
        if last is not None:
            summary += f" (last: {last.destination}, {last.status})"
    since = last.completed if last is not None else facts.created_at
    target = _message(str(last.pk)) if last is not None else _message_log(facts.incident_id)
    return Reason(NOTHING_IN_FLIGHT, summary, evidence, since, target)


def _cleanup(facts: Facts) -> Reason:
    cleanup = facts.cleanup
    others = {b.queue: b.count for b in facts.backlog if b.queue != registry.CLEANUP_QUEUE}
    running = [r.message_id for r in facts.runs if r.queue != registry.CLEANUP_QUEUE]
    evidence: dict[str, Any] = {"status": facts.status, "ended": facts.ended_at,
                                "waits_for_queued": others, "waits_for_running": running}
    if cleanup is None or cleanup.status not in IN_FLIGHT_STATUSES:
        evidence["cleanup_message"] = None if cleanup is None else {
            "id": str(cleanup.pk), "status": cleanup.status, "comment": cleanup.comment[:500]}
        summary = (f"the incident ended ({facts.status}) but no cleanup is in flight"
                   + (f" (its cleanup message is {cleanup.status})" if cleanup else "")
                   + ": nothing will clean it up; kill it (admin, or `manage.py kill_incidents "
                   "ID`) to force the cleanup")
        target = _message(str(cleanup.pk)) if cleanup else _message_log(facts.incident_id)
        return Reason(CLEANUP_MISSING, summary, evidence, facts.ended_at, target)
    evidence["cleanup_message"] = {"id": str(cleanup.pk), "status": cleanup.status,
                                   "attempts": cleanup.attempts}
    evidence["gives_up_on_untaken_after_seconds"] = conf.get("CLEANUP_WAIT_SECONDS")
    if others or running:
        waits = ", ".join([f"{n} queued in {q}" for q, n in others.items()]
                          + ([f"{len(running)} being handled"] if running else []))
        summary = (f"the incident ended ({facts.status}); its cleanup waits for the messages "
                   f"in flight: {waits}")
    else:
        summary = (f"the incident ended ({facts.status}); its cleanup message is "
                   f"{cleanup.status} and has not run yet")
    return Reason(CLEANUP_WAITING, summary, evidence, facts.ended_at, _message(str(cleanup.pk)))


def _waiting(facts: Facts, backlog: Backlog) -> Reason:
    consumers = facts.consumers.get(backlog.queue) or QueueConsumers(False, how="not asked")
    evidence: dict[str, Any] = {
        "queue": backlog.queue, "count": backlog.count, "by_status": backlog.by_status,
        "oldest_message": backlog.oldest_id, "handler": backlog.handler,
        "consumers": consumers.count if consumers.known else "unknown",
        "workers": list(consumers.workers), "how_known": consumers.how}
    if consumers.broker_messages is not None:
        evidence["in_broker"] = consumers.broker_messages
    waiting = f"{backlog.count} message(s) wait in queue {backlog.queue}"
    if backlog.handler is None:
        waiting += " (no handler for it is registered in this process)"
    if consumers.known and consumers.count == 0:
        kind, summary = QUEUE_WITHOUT_CONSUMER, f"{waiting}, and no worker consumes it ({consumers.how})"
    else:
        kind = MESSAGES_WAITING
        by = (", ".join(consumers.workers) or f"{consumers.count} consumer(s)") if consumers.known \
            else consumers.how
        summary = f"{waiting}; consumed by {by}"
    return Reason(kind, summary, evidence, backlog.oldest_submitted,
                  _message_log(facts.incident_id, backlog.queue, WAITING_STATUSES))


def _long_run(facts: Facts, run: Run, now: datetime, floor: float) -> Reason | None:
    usual = facts.usual.get(run.queue) or Usual(None, 0)
    running = (now - run.started).total_seconds()
    limit = max(floor, LONG_FACTOR * usual.median) if usual.median is not None else floor
    if running < limit:
        return None
    compared = (f"usually {human_duration(usual.median)} (median of {usual.samples} runs)"
                if usual.median is not None else
                f"too few completed runs to know its usual time ({usual.samples})")
    worker = f"worker process {run.consumer}" if run.consumer else "worker not recorded"
    summary = (f"{run.handler or run.queue} has been running for {human_duration(running)}, "
               f"{compared}; {worker}, attempt {run.attempts}")
    evidence = {"message": run.message_id, "queue": run.queue, "handler": run.handler,
                "running_seconds": round(running, 3), "usual_seconds": usual.median,
                "samples": usual.samples, "attempts": run.attempts,
                "worker": run.consumer or None}
    return Reason(LONG_RUN, summary, evidence, run.started, _message(run.message_id))


def _lock_held(facts: Facts, lock: HeldLock) -> Reason:
    if lock.holder_message:
        holder = f"message {lock.holder_message} ({lock.holder_status or 'not in the log'})"
    else:
        holder = f"process {lock.owner} (taken outside a handler)"
    lease = f"lease until {timestamp(lock.expires)}" if lock.expires else "lease unknown"
    summary = f"lock {lock.label} is held by {holder}; {lease}"
    if lock.holder_status in FINAL_STATUSES:
        summary += " (its run has ended: the lock is left over until its lease ends)"
    evidence = {"label": lock.label, "holder": lock.owner, "holder_message": lock.holder_message,
                "holder_status": lock.holder_status, "since": lock.since,
                "lease_until": lock.expires, "store": facts.lock_store}
    if facts.lock_store == "redis" and lock.holder_message:  # no admin page lists Redis locks
        target = _message(lock.holder_message)
    else:
        target = Target("locks", {"incident": facts.incident_id})
    return Reason(LOCK_HELD, summary, evidence, lock.since, target)


def _lock_wait(facts: Facts, lock: HeldLock) -> Reason | None:
    """Who waits for an engine lock: deliveries to an @atomic handler wait (unclaimed) for
    `_atomic:<handler>`; runs of a handler may wait at their first Put for `_persist:<handler>`."""
    kind_of_lock, _, handler = lock.label.partition(":")
    if kind_of_lock == "_atomic":
        waiting = [b for b in facts.backlog if b.atomic and b.handler == handler]
        if not waiting:
            return None
        count = sum(b.count for b in waiting)
        oldest = min(waiting, key=lambda b: b.oldest_submitted)
        earlier = {b.queue: facts.earlier_lock_waits[b.queue] for b in waiting
                   if b.queue in facts.earlier_lock_waits}
        summary = (f"{count} delivery(ies) to @atomic {handler} wait for its lock "
                   f"{lock.label}" + "".join(f"; earlier, {n} waited up to {human_duration(w)}"
                                             for n, w in earlier.values()))
        evidence = {"label": lock.label, "waiting": count, "queues": [b.queue for b in waiting],
                    "oldest_message": oldest.oldest_id, "holder_message": lock.holder_message,
                    "earlier_waits": {q: {"runs": n, "longest_seconds": w}
                                      for q, (n, w) in earlier.items()}}
        return Reason(LOCK_WAIT, summary, evidence, oldest.oldest_submitted,
                      _message_log(facts.incident_id, oldest.queue, WAITING_STATUSES))
    if kind_of_lock == "_persist":
        runs = [r for r in facts.runs if r.handler == handler
                and r.message_id != lock.holder_message]
        if not runs:
            return None
        summary = (f"{len(runs)} run(s) of {handler} may be waiting for {lock.label} at their "
                   "first Persist.Put")
        evidence = {"label": lock.label, "runs": [r.message_id for r in runs],
                    "holder_message": lock.holder_message}
        return Reason(LOCK_WAIT, summary, evidence, min(r.started for r in runs),
                      _message_log(facts.incident_id, runs[0].queue, (MessageStatus.PROCESSING,)))
    return None  # a GetLock() waits inside its handler, unrecorded: the held lock says it all


def _dead_letters(facts: Facts) -> Reason | None:
    if facts.dead_letters_error:
        return Reason(DEAD_LETTERS, f"dead letters unknown: {facts.dead_letters_error}",
                      {"error": facts.dead_letters_error}, None, Target("dead_letters"))
    if not facts.dead_letters:
        return None
    capped = facts.dead_letters_scanned >= DEAD_LETTER_SCAN
    summary = (f"{len(facts.dead_letters)} message(s) of this incident were set aside as dead "
               f"letters ({'; '.join(sorted({d.reason[:120] for d in facts.dead_letters}))})"
               + (f"; only the oldest {DEAD_LETTER_SCAN} dead letters were read" if capped else ""))
    evidence = {"count": len(facts.dead_letters), "scanned": facts.dead_letters_scanned,
                "capped": capped,
                "letters": [{"queue": d.queue, "reason": d.reason, "body": d.body[:200]}
                            for d in facts.dead_letters[:10]]}
    return Reason(DEAD_LETTERS, summary, evidence, None, Target("dead_letters"))


def diagnose(incident_id: str, *, inspect_timeout: float = queue_consumers.INSPECT_TIMEOUT_SECONDS,
             long_floor: float = LONG_FLOOR_SECONDS) -> list[Reason]:
    """Every reason the incident may not be moving (none for an ended, cleaned-up one).

        for reason in diagnose(incident_id):
            print(reason.kind, reason.summary)
    """
    facts = gather(incident_id, inspect_timeout=inspect_timeout)
    return reasons(facts, timezone.now(), long_floor=long_floor)
