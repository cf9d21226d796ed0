"""Where a hop's time goes: one hop chain delivered in this process (no worker, no broker
consumer), each engine step timed. Uses the database and broker of the environment, like a
worker; the published messages are purged at the end.

    python -m bench.profile_hop --hops 500
    DATABASE_URL=postgres://... CELERY_BROKER_URL=amqp://... python -m bench.profile_hop
"""
from __future__ import annotations

import os

os.environ["WORKFLOW_MODULES"] = "bench.handlers"

import incidents.standalone  # noqa: F401, I001  (sets Django up for this script)

import argparse
import collections
import functools
import time
from collections.abc import Callable
from typing import Any

from django.core.management import call_command

from incidents import workflow
from incidents.engine import dispatch, ledger, outbox, sending
from incidents.models import MessageLog
from incidents.testing import purge_queues

#: The steps timed: (module, function, what it is).
STEPS = [
    (ledger, "lookup", "read the row and its incident (before the handler)"),
    (sending, "send", "the handler's send(): checks, JSON, staging"),
    (ledger, "finish_and_log", "the commit in one statement (PostgreSQL)"),
    (ledger, "finish", "the fenced finish (SQLite: in the commit's transaction)"),
    (ledger, "insert", "logging the sent message (SQLite: in the same transaction)"),
    (outbox, "mark_published", "marking published messages SENT (about once a second)"),
    (outbox, "publish", "publishing after the commit (Celery's send_task)"),
]


def timing(spent: dict[str, float], name: str, real: Callable[..., Any]
           ) -> Callable[..., Any]:
    @functools.wraps(real)
    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return real(*args, **kwargs)
        finally:
            spent[name] += time.perf_counter() - started
    return timed


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--hops", type=int, default=500)
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    spent: dict[str, float] = collections.defaultdict(float)
    for module, name, _ in STEPS:
        setattr(module, name, timing(spent, name, getattr(module, name)))
    incident_id = workflow.CreateIncident(name="hop profile", kind="CHAIN")
    workflow.send(message={"IncidentID": incident_id, "left": 2 * args.hops + 100},
                  queue="soak_hop")
    workflow.FlushMessages()
    waiting = MessageLog.objects.filter(incident_id=incident_id, status__in=["QUEUED", "SENT"])

    def hops(count: int) -> float:
        total = 0.0
        for _ in range(count):
            body = waiting.order_by("-submitted").values_list("body", flat=True).first()
            started = time.perf_counter()
            dispatch.deliver("soak_hop", body)
            total += time.perf_counter() - started
        return total

    try:
        hops(50)  # warm-up: connections, queue declarations, prepared plans
        spent.clear()
        total = hops(args.hops)
    finally:
        workflow.Complete(incident_id)
        workflow.FlushMessages()
        purge_queues(["soak_hop"])
    print(f"{os.environ.get('DATABASE_URL', 'sqlite').split(':')[0]} database, "
          f"{os.environ.get('CELERY_BROKER_URL', 'wffs').split(':')[0]} broker: "
          f"{1000 * total / args.hops:.3f} ms per delivered hop")
    for _module, name, what in STEPS:
        if spent[name]:
            print(f"  {1000 * spent[name] / args.hops:6.3f} ms  {name:15} {what}")
    rest = total - sum(spent.values())
    print(f"  {1000 * rest / args.hops:6.3f} ms  {'the rest':15} checks, context, run "
          "bookkeeping, Python")


if __name__ == "__main__":
    main()
