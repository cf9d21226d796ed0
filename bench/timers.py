"""Durable timers (send(delay=...)): (a) hop chains with 10,000 timers pending in the log vs
none, (b) how late timers fire on an idle system (fired = published by the timer loop,
handled = its handler started; both minus the due time). On the configured broker and
database, with one worker (concurrency 2):

    python -m bench.timers [--pending 10000] [--timers 200] [--chains 4 --hops 50]
"""
from __future__ import annotations

import os

if not os.environ.get("WORKFLOW_MODULES"):
    os.environ["WORKFLOW_MODULES"] = "bench.handlers,workflows.quicksort"

import incidents.standalone  # noqa: F401, I001  (sets Django up for this script)

import argparse
import statistics
import time
import uuid
from datetime import timedelta

from django.core.management import call_command
from django.utils import timezone

from bench.measure import QUICK, Engine, Sizes, stats, wait_for, workers
from incidents import workflow
from incidents.engine import operations
from incidents.models import MessageLog, MessageStatus


def chain_rate(engine: Engine, chains: int, hops: int) -> float:
    run = engine.chains(chains, hops)
    return run.messages / run.seconds


def add_pending_timers(count: int) -> str:
    """`count` timers due in an hour, on an incident of their own; its id."""
    incident_id = workflow.CreateIncident(name="bench pending timers", kind="BENCH")
    due = timezone.now() + timedelta(hours=1)
    MessageLog.objects.bulk_create([
        MessageLog(id=uuid.uuid4(), incident_id=incident_id, destination="bench_probe",
                   status=MessageStatus.QUEUED, submitted=due, not_before=due, body={})
        for _ in range(count)], batch_size=2000)
    return incident_id


def lateness(count: int, delay: float) -> dict[str, dict[str, float]]:
    """Send `count` timers due `delay` seconds on, spread over a second; their lateness (ms)."""
    incident_id = workflow.CreateIncident(name="bench timer lateness", kind="BENCH")
    ids = [workflow.send({"IncidentID": incident_id, "n": n}, "bench_probe",
                         delay=delay + n / count) for n in range(count)]
    workflow.FlushMessages()
    rows = MessageLog.objects.filter(pk__in=ids)
    wait_for(lambda: rows.filter(status=MessageStatus.COMPLETE).count() == count, 120,
             f"{count} timers to fire")
    times = [(r.not_before, r.submitted, r.received) for r in rows]
    fired = [(at - due).total_seconds() * 1000 for due, at, _ in times if due]
    handled = [(at - due).total_seconds() * 1000 for due, _, at in times if due and at]
    assert min(handled) >= 0, "a timer was handled before it was due"
    operations.cancel_incident(incident_id, reason="benchmark done", by="bench")
    return {"fired_ms": stats(fired), "handled_ms": stats(handled)}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--pending", type=int, default=10_000)
    parser.add_argument("--timers", type=int, default=200)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--hops", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    engine = Engine(Sizes(timeout=QUICK.timeout * 5))
    with workers(engine):
        rates: dict[str, list[float]] = {"no": [], f"{args.pending}": []}
        pending_incident = None
        for _ in range(args.repeat):  # interleaved, so drift hits both alike
            if pending_incident:
                MessageLog.objects.filter(incident_id=pending_incident).delete()
            rates["no"].append(chain_rate(engine, args.chains, args.hops))
            pending_incident = add_pending_timers(args.pending)
            rates[f"{args.pending}"].append(chain_rate(engine, args.chains, args.hops))
        for name, values in rates.items():
            print(f"hop chains ({args.chains} x {args.hops}), {name} timers pending: "
                  f"median {statistics.median(values):.0f} messages/s, runs {values}")
        if pending_incident:
            operations.cancel_incident(pending_incident, reason="benchmark done", by="bench")
        time.sleep(1)  # let the cancel's cleanup go by before measuring an idle system
        late = lateness(args.timers, delay=2.0)
    for name, figures in late.items():
        print(f"timer lateness, {args.timers} timers, {name}: " +
              ", ".join(f"{k} {v:.0f}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
