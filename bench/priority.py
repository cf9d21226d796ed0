"""`make bench`'s priority phase (issue 16): an urgent incident against a backlog. BACKLOG
messages of a normal incident wait in one queue (bench_priority) served by one worker with
2 processes; a 20-hop chain of an urgent incident on the same queue starts after them. Its
completion time against the same chain on the idle system (the goal: within 2x), and the same
chain at normal priority, started with it, for contrast (it waits for the backlog).
bench.suite runs it after bench.measure. Alone:

    python -m bench.priority --output var/bench/priority.json [--quick] [--repeat 3]

The backlog is filled while no worker runs, so all of it waits whatever the broker's speed
(filling faster than two processes drain would leave a backlog of unknown size); then the
worker starts, and the chains start once it has handled WARM_UP backlog messages, so that
they meet warm processes as on a worker that has been serving. The idle chain runs on the
same worker once the backlog is gone.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, fields
from typing import Any

from bench.django_setup import WORKFLOW_MODULES
from bench.measure import phase_main, stats, wait_for
from incidents import workflow
from incidents.models import (
    ENDED_INCIDENT_STATUSES,
    Incident,
    IncidentPriority,
    IncidentStatus,
    MessageLog,
    MessageStatus,
)
from incidents.processes import WorkerGroup, worker_env

QUEUE = "bench_priority"  # bench/handlers.py priority_hop_handler
WARM_UP = 20  # backlog messages handled before the chains start


@dataclass
class Shape:
    backlog: int = 5000
    hops: int = 20


QUICK_SHAPE = Shape(backlog=200, hops=5)


@dataclass
class Run:
    idle_seconds: float  # from the chain's first send to its incident's completion
    urgent_seconds: float
    normal_seconds: float
    waiting: int  # backlog messages not yet handled when the chains started
    overtaken: int  # of those, still not handled when the urgent chain completed
    fill_seconds: float  # to send the backlog


def fill(count: int) -> str:
    """`count` backlog messages of a normal incident on QUEUE; its id."""
    incident_id = workflow.CreateIncident(name="bench priority backlog", kind="BENCH")
    for _ in range(count):
        workflow.send(message={"IncidentID": incident_id}, queue=QUEUE)
    workflow.FlushMessages()
    return incident_id


def handled(incident_id: str) -> int:
    return MessageLog.objects.filter(incident_id=incident_id, status=MessageStatus.COMPLETE).count()


def start_chain(level: IncidentPriority, hops: int) -> tuple[str, float]:
    """A chain of `hops` hops on QUEUE by a new incident of priority `level`; its id and when
    its first message was sent."""
    incident_id = workflow.CreateIncident(name=f"bench priority {level.label} chain", kind="BENCH",
                                          priority=level.label)
    started = time.time()
    workflow.send(message={"IncidentID": incident_id, "left": hops - 1}, queue=QUEUE)
    workflow.FlushMessages()
    return incident_id, started


def completed_in(chain: tuple[str, float], timeout: float) -> float:
    """Seconds from the chain's first send to its incident's completion."""
    incident_id, started = chain
    rows = Incident.objects.filter(pk=incident_id)
    wait_for(lambda: rows.filter(status__in=ENDED_INCIDENT_STATUSES).exists(), timeout,
             f"chain {incident_id} to end", poll=0.02)
    incident = rows.get()
    if incident.status != IncidentStatus.COMPLETE or incident.completed_at is None:
        raise AssertionError(f"benchmark: chain {incident_id} ended {incident.status}: "
                             f"{incident.comment}")
    return incident.completed_at.timestamp() - started


def one_run(env: dict[str, str], shape: Shape, timeout: float) -> Run:
    began = time.monotonic()
    backlog = fill(shape.backlog)
    filled = time.monotonic() - began
    ids = [backlog]
    with WorkerGroup(env=env) as group:
        group.start("bench-priority", concurrency=2)
        wait_for(lambda: handled(backlog) >= WARM_UP, timeout, "the worker to warm up", poll=0.1)
        waiting = shape.backlog - handled(backlog)
        urgent = start_chain(IncidentPriority.URGENT, shape.hops)
        normal = start_chain(IncidentPriority.NORMAL, shape.hops)
        urgent_seconds = completed_in(urgent, timeout)
        overtaken = shape.backlog - handled(backlog)
        normal_seconds = completed_in(normal, timeout)
        wait_for(lambda: handled(backlog) == shape.backlog, timeout, "the backlog", poll=0.2)
        workflow.Complete(backlog)
        workflow.FlushMessages()
        ids += [urgent[0], normal[0]]
        wait_for(lambda: not Incident.objects.filter(pk__in=ids, cleaned_at__isnull=True).exists(),
                 timeout, "cleanup", poll=0.1)
        idle_seconds = completed_in(start_chain(IncidentPriority.URGENT, shape.hops), timeout)
    return Run(idle_seconds=idle_seconds, urgent_seconds=urgent_seconds,
               normal_seconds=normal_seconds, waiting=waiting, overtaken=overtaken,
               fill_seconds=filled)


def measure(shape: Shape, repeat: int, timeout: float) -> dict[str, Any]:
    env = worker_env({"WORKFLOW_MODULES": WORKFLOW_MODULES})
    runs = [one_run(env, shape, timeout) for _ in range(repeat)]
    figures = {f.name: stats([float(getattr(r, f.name)) for r in runs]) for f in fields(Run)}
    return {**asdict(shape), "warm_up": WARM_UP, **figures,
            "urgent_over_idle": (figures["urgent_seconds"]["median"]
                                 / figures["idle_seconds"]["median"])}


def main() -> None:
    phase_main("priority", __doc__, lambda sizes, args: measure(
        QUICK_SHAPE if args.quick else Shape(), args.repeat, sizes.timeout))


if __name__ == "__main__":
    main()
