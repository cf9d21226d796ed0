"""`make bench`'s timers phase (durable timers, send(delay=...)): (a) the hop chains of the
shapes phase with 10,000 timers of another incident pending in the log, against none, in
turn; (b) how late timers fire on an idle system (published by the timer loop, and the
handler's start, each minus the due time). On the configured broker and database, one
worker with 2 processes; bench.suite runs it after bench.measure. Alone:

    python -m bench.timers --output var/bench/timers.json [--quick] [--repeat 3]
"""
from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from django.utils import timezone

import bench.django_setup  # noqa: F401  (sets Django up)
from bench.measure import (
    Engine,
    Run,
    Sizes,
    phase_main,
    rates,
    stats,
    wait_for,
    workers,
)
from incidents import workflow
from incidents.engine import operations
from incidents.models import MessageLog, MessageStatus

PENDING, QUICK_PENDING = 10_000, 200  # timers waiting in the log during the chains
FIRED, QUICK_FIRED = 200, 20  # timers whose lateness is measured


def add_pending_timers(count: int) -> str:
    """`count` timers due in an hour, on an incident of their own; its id."""
    incident_id = workflow.CreateIncident(name="bench pending timers", kind="BENCH")
    due = timezone.now() + timedelta(hours=1)
    MessageLog.objects.bulk_create([
        MessageLog(id=uuid.uuid4(), incident_id=incident_id, destination="bench_probe",
                   status=MessageStatus.QUEUED, submitted=due, not_before=due, body={})
        for _ in range(count)], batch_size=2000)
    return incident_id


def chains_with_and_without(engine: Engine, sizes: Sizes, repeat: int,
                            pending: int) -> dict[str, Any]:
    """The hop chains with no timers pending and with `pending`, in turn, so a drifting
    machine meets both alike."""
    none: list[Run] = []
    with_pending: list[Run] = []
    for _ in range(repeat):
        none.append(engine.chains(sizes.chains, sizes.chain_hops))
        holder = add_pending_timers(pending)
        with_pending.append(engine.chains(sizes.chains, sizes.chain_hops))
        operations.cancel_incident(holder, reason="benchmark run done", by="bench")  # drops them
    result = {"none": rates(none), "pending": rates(with_pending)}
    result["pending_over_none_ms"] = (result["pending"]["ms_per_message"]
                                      / result["none"]["ms_per_message"])
    return result


def lateness(count: int, delay: float, timeout: float) -> dict[str, dict[str, float]]:
    """Send `count` timers due `delay` seconds on, spread over a second; their lateness (ms)."""
    incident_id = workflow.CreateIncident(name="bench timer lateness", kind="BENCH")
    ids = [workflow.send({"IncidentID": incident_id, "n": n}, "bench_probe",
                         delay=delay + n / count) for n in range(count)]
    workflow.FlushMessages()
    rows = MessageLog.objects.filter(pk__in=ids)
    wait_for(lambda: rows.filter(status=MessageStatus.COMPLETE).count() == count, timeout,
             f"{count} timers to fire")
    times = [(r.not_before, r.submitted, r.received) for r in rows]
    fired = [(at - due).total_seconds() * 1000 for due, at, _ in times if due]
    handled = [(at - due).total_seconds() * 1000 for due, _, at in times if due and at]
    if min(handled) < 0:
        raise AssertionError("benchmark: a timer was handled before it was due")
    operations.cancel_incident(incident_id, reason="benchmark done", by="bench")
    return {"published_late_ms": stats(fired), "handled_late_ms": stats(handled)}


def measure(sizes: Sizes, repeat: int, *, pending: int, fired: int) -> dict[str, Any]:
    engine = Engine(sizes)
    with workers(engine):
        chains = chains_with_and_without(engine, sizes, repeat, pending)
        late = lateness(fired, delay=2.0, timeout=sizes.timeout)
    return {"pending": pending, "fired": fired, "chains": chains, **late}


def main() -> None:
    phase_main("timers", __doc__, lambda sizes, args: measure(
        sizes, args.repeat, pending=QUICK_PENDING if args.quick else PENDING,
        fired=QUICK_FIRED if args.quick else FIRED))


if __name__ == "__main__":
    main()
