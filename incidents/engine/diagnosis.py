"""Why an incident is not moving: every reason found, each with its evidence, its age and
what it names (`manage.py diagnose_incident`, the admin's "Why is it not moving?").

`gather()` reads the facts (the log, the locks, the broker, the workers); `reasons()` is a
pure function of them; `diagnose()` does both.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.utils import timezone

from incidents import conf
from incidents.engine import queue_consumers, registry
from incidents.engine.diagnosis_facts import (
    DEAD_LETTER_SCAN,
    Backlog,
    Facts,
    HeldLock,
    Run,
    Usual,
    gather,
)
from incidents.engine.queue_consumers import QueueConsumers
from incidents.formatting import human_duration, timestamp
from incidents.models import (
    FINAL_STATUSES,
    IN_FLIGHT_STATUSES,
    LIVE_INCIDENT_STATUSES,
    WAITING_STATUSES,
    IncidentStatus,
    MessageStatus,
)

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
RELEASES_OUTSTANDING = "releases_outstanding"

#: A run is long when it lasts LONG_FACTOR times its queue's median, and never under
#: LONG_FLOOR_SECONDS (shorter runs are the incident moving).
LONG_FACTOR, LONG_FLOOR_SECONDS = 3.0, 5.0


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
        releases = _releases_outstanding(facts)
        if releases is None or facts.cleanup is None or facts.cleanup.status in IN_FLIGHT_STATUSES:
            found.append(_cleanup(facts))
        found += [releases] if releases else []
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


def _releases_outstanding(facts: Facts) -> Reason | None:
    """An ended incident is not cleaned up while a release of its resources is outstanding."""
    left = facts.outstanding_releases
    if not left:
        return None
    by_status: dict[str, int] = {}
    for resource in left:
        by_status[resource.status] = by_status.get(resource.status, 0) + 1
    failed = [r for r in left if r.status == "FAILED"]
    summary = (f"the incident ended ({facts.status}) but {len(left)} release(s) of its external "
               "resources are outstanding (" + ", ".join(f"{n} {s}" for s, n in
                                                         sorted(by_status.items())) + ")")
    if failed:
        summary += (f"; {failed[0].kind} {failed[0].ref} failed: {failed[0].comment[-200:]}; "
                    "retry the failed release(s) (admin: the incident's resources)")
    summary += "; it is marked cleaned up once all are released"
    evidence = {"status": facts.status, "by_status": by_status,
                "resources": [{"id": str(r.pk), "kind": r.kind, "ref": r.ref, "status": r.status,
                               "release_queue": r.release_queue,
                               "release_message": str(r.release_message or ""),
                               "attempts": r.release_attempts, "comment": r.comment[-500:]}
                              for r in left[:10]]}
    first = (failed or left)[0]
    target = (_message(str(first.release_message)) if first.release_message
              else _message_log(facts.incident_id))
    return Reason(RELEASES_OUTSTANDING, summary, evidence, facts.ended_at, target)


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
