"""Measure one configuration (the broker and database in the environment): each shape on
the engine and as plain Celery tasks (bench/raw_tasks.py) twice, on stock Celery
(bench/raw_stock.py) and with the engine's Celery settings (bench/raw.py). bench.suite runs
it once per configuration in a fresh process; alone:

    python -m bench.measure --output var/bench/result.json [--quick] [--repeat 3]
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import random
import re
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.db.models import Max

# django_setup first: it sets Django up for this script, before the others import models.
from bench import django_setup, prefill, raw, raw_stock, raw_tasks
from incidents import conf, workflow
from incidents.engine import registry
from incidents.models import Incident, IncidentStatus, MessageLog, MessageStatus
from incidents.processes import WorkerGroup, worker_env
from workflows import quicksort


@dataclass
class Sizes:
    long_chain: int = 2000  # hops of one chain
    chains: int = 50  # parallel chains of chain_hops hops
    chain_hops: int = 100
    sort_size: int = 10_000
    width: int = 1000  # scatter-gather fan-out
    scaling_chains: int = 20
    scaling_hops: int = 100
    probes: int = 200  # latency samples
    memory_messages: int = 100_000
    log_rows: int = 1_000_000  # growth: finished rows already in the log
    finished_incidents: int = 10_000
    active_incidents: int = 1000
    active_hops: int = 10
    timeout: float = 1800.0  # seconds any one run may take


QUICK = Sizes(long_chain=30, chains=4, chain_hops=10, sort_size=200, width=20, scaling_chains=2,
              scaling_hops=10, probes=5, memory_messages=200, log_rows=2000,
              finished_incidents=20, active_incidents=10, active_hops=3, timeout=120.0)


@dataclass
class Run:
    seconds: float
    messages: int
    extra: dict[str, Any]


def wait_for(condition: Callable[[], object], timeout: float, what: str,
             poll: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"benchmark: timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(poll)


class Engine:
    """Shapes run by our handlers (bench/handlers.py, workflows/quicksort.py)."""

    name = "engine"
    app = "wfproject"
    queues: list[str] | None = None

    def __init__(self, sizes: Sizes) -> None:
        self.sizes = sizes

    def _incidents(self, count: int, kind: str) -> list[str]:
        return [workflow.CreateIncident(name=f"bench {kind.lower()} {n}", kind=kind)
                for n in range(count)]

    def _finish(self, ids: list[str], started: float) -> float:
        """Wait for the incidents to complete (and be cleaned, so the next run starts idle);
        return seconds from `started` to the last completion."""
        timeout = self.sizes.timeout
        wait_for(lambda: Incident.objects.filter(pk__in=ids, status=IncidentStatus.COMPLETE)
                 .count() == len(ids), timeout, f"{len(ids)} incident(s) to complete")
        last: datetime = Incident.objects.filter(pk__in=ids).aggregate(t=Max("completed_at"))["t"]
        wait_for(lambda: not Incident.objects.filter(pk__in=ids, cleaned_at__isnull=True)
                 .exists(), timeout, "cleanup")
        return last.timestamp() - started

    def chains(self, count: int, hops: int) -> Run:
        ids = self._incidents(count, "CHAIN")
        started = time.time()
        for incident_id in ids:
            workflow.send(message={"IncidentID": incident_id, "left": hops - 1}, queue="soak_hop")
        workflow.FlushMessages()
        return Run(self._finish(ids, started), count * hops, {})

    def quicksort(self, size: int, group: WorkerGroup) -> Run:
        numbers = quicksort.random_numbers(size, seed=size)
        waits = _lock_waits(group)
        started = time.time()
        incident_id, _ = quicksort.start_demo(size, seed=size)
        seconds = self._finish([incident_id], started)
        quicksort.check_demo(incident_id, numbers)
        messages = MessageLog.objects.filter(incident_id=incident_id).exclude(
            destination__startswith="_").count()
        return Run(seconds, messages, _waits_since(waits, group))

    def scatter(self, width: int, group: WorkerGroup) -> Run:
        [incident_id] = self._incidents(1, "SCATTER")
        waits = _lock_waits(group)
        started = time.time()
        workflow.send(message={"IncidentID": incident_id, "width": width}, queue="bench_scatter")
        workflow.FlushMessages()
        seconds = self._finish([incident_id], started)
        return Run(seconds, 1 + 2 * width, _waits_since(waits, group))

    def latency(self, probes: int) -> list[float]:
        [incident_id] = self._incidents(1, "PROBE")
        samples = []
        for _ in range(probes):
            sent_at = time.time()
            message_id = workflow.send(message={"IncidentID": incident_id}, queue="bench_probe")
            workflow.FlushMessages()
            rows = MessageLog.objects.filter(pk=str(message_id), status=MessageStatus.COMPLETE)
            wait_for(rows.exists, self.sizes.timeout, "a probe", poll=0.005)
            samples.append(rows.get().received.timestamp() - sent_at)  # type: ignore[union-attr]
        workflow.Complete(incident_id)
        workflow.FlushMessages()
        return samples


class RawCelery:
    """The same shapes as plain Celery tasks (bench/raw_tasks.py) on one baseline's app
    (`module`: bench.raw or bench.raw_stock)."""

    def __init__(self, sizes: Sizes, name: str, module: ModuleType) -> None:
        self.sizes = sizes
        self.name = name
        self.app = module.__name__
        self.tasks: raw_tasks.RawTasks = module.tasks
        self.queues: list[str] | None = self.tasks.queues

    def _finish(self, run: str, count: int, started: float) -> float:
        self._wait_count(run, count)
        with connection.cursor() as cursor:
            cursor.execute("SELECT max(finished) FROM bench_raw_done WHERE run = %s", [run])
            return float(cursor.fetchone()[0]) - started

    def chains(self, count: int, hops: int) -> Run:
        run, started = uuid.uuid4().hex, time.time()
        for n in range(count):
            self.tasks.hop.apply_async((run, str(n), hops - 1, started), queue=self.tasks.queue("hop"))
        return Run(self._finish(run, count, started), count * hops, {})

    def quicksort(self, size: int, group: WorkerGroup) -> Run:
        numbers = quicksort.random_numbers(size, seed=size)
        run, started = uuid.uuid4().hex, time.time()
        self.tasks.start_sort(run, numbers, started)
        seconds = self._finish(run, 1, started)
        with connection.cursor() as cursor:
            cursor.execute("SELECT item FROM bench_raw_done WHERE run = %s", [run])
            verdict = cursor.fetchone()[0]
        if verdict != f"sorted {size}":
            raise ValueError(f"{self.name} quicksort of {size} numbers ended {verdict!r}")
        return Run(seconds, 0, {})

    def scatter(self, width: int, group: WorkerGroup) -> Run:
        run, started = uuid.uuid4().hex, time.time()
        self.tasks.scatter.apply_async((run, width, started), queue=self.tasks.queue("work"))
        return Run(self._finish(run, 1, started), 1 + 2 * width, {})

    def latency(self, probes: int) -> list[float]:
        run = uuid.uuid4().hex
        for n in range(1, probes + 1):
            self.tasks.probe.apply_async((run, str(n), time.time()), queue=self.tasks.queue("probe"))
            self._wait_count(run, n, poll=0.005)
        with connection.cursor() as cursor:
            cursor.execute("SELECT finished - started FROM bench_raw_done WHERE run = %s", [run])
            return [float(row[0]) for row in cursor.fetchall()]

    def _wait_count(self, run: str, count: int, poll: float = 0.05) -> None:
        def done() -> bool:
            with connection.cursor() as cursor:
                cursor.execute("SELECT count(*) FROM bench_raw_done WHERE run = %s", [run])
                return int(cursor.fetchone()[0]) >= count

        wait_for(done, self.sizes.timeout, f"{count} {self.name} run(s)", poll=poll)


def _lock_waits(group: WorkerGroup) -> tuple[int, float]:
    """Deliveries that waited for an @atomic handler's lock so far, and the seconds they
    waited in their workers (engine/dispatch.py logs each wait)."""
    text = "".join(w.log_text() for w in group.workers)
    waits = re.findall(r"(?:waited|busy for) ([0-9.]+) ms", text)
    return len(waits), sum(float(ms) for ms in waits) / 1000


def _waits_since(before: tuple[int, float], group: WorkerGroup) -> dict[str, float]:
    count, seconds = _lock_waits(group)
    return {"lock_waits": count - before[0], "lock_wait_seconds": seconds - before[1]}


@contextmanager
def workers(impl: Engine | RawCelery, *, concurrency: int = 2, pool: str = "prefork",
            ) -> Iterator[WorkerGroup]:
    env = worker_env({"WORKFLOW_MODULES": django_setup.WORKFLOW_MODULES})
    with WorkerGroup(env=env) as group:
        group.start(f"bench-{impl.name}-{pool}{concurrency}", concurrency=concurrency,
                    pool=pool, queues=impl.queues, app=impl.app)
        impl.chains(2, 5)  # warm-up: connections, imports, queue declarations
        yield group


def stats(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def rates(runs: list[Run], messages: int | None = None) -> dict[str, Any]:
    """Messages per second over the runs; per-message milliseconds from the median."""
    per_second = [(messages or r.messages) / r.seconds for r in runs]
    summary: dict[str, Any] = {"per_second": stats(per_second),
                               "seconds": stats([r.seconds for r in runs]),
                               "ms_per_message": 1000 / statistics.median(per_second),
                               "messages": messages or runs[0].messages}
    for key in sorted({k for r in runs for k in r.extra}):
        summary[key] = stats([r.extra[key] for r in runs])
    return summary


Shape = Callable[[Any, WorkerGroup], Run]


def implementations(sizes: Sizes) -> dict[str, Engine | RawCelery]:
    """The engine and its two baselines, in the order each repeat runs them; the keys name
    their figures in the results."""
    return {"engine": Engine(sizes),
            "stock": RawCelery(sizes, "stock", raw_stock),
            "raw": RawCelery(sizes, "raw", raw)}


def _interleaved(shapes: dict[str, Shape], sizes: Sizes, repeat: int, *, latency: bool = False,
                 concurrency: int = 2, pool: str = "prefork") -> dict[str, dict[str, Any]]:
    """Run each shape `repeat` times on the engine and on both baselines, one after the
    other, so all meet the same moments of a noisy machine; all sets of workers run
    throughout (an idle one costs next to nothing)."""
    impls = implementations(sizes)
    out: dict[str, dict[str, Any]] = {name: {} for name in impls}
    with ExitStack() as stack:
        groups = {name: stack.enter_context(workers(impl, concurrency=concurrency, pool=pool))
                  for name, impl in impls.items()}
        for shape_name, shape in shapes.items():
            runs: dict[str, list[Run]] = {name: [] for name in impls}
            for _ in range(repeat):
                for name, impl in impls.items():
                    runs[name].append(shape(impl, groups[name]))
            # All pass the same messages (same shape; for quicksort the same numbers and
            # splits), which the engine counts from its log.
            messages = runs["engine"][0].messages
            for name in impls:
                out[name][shape_name] = rates(runs[name], None if name == "engine" else messages)
        for name, impl in impls.items() if latency else ():
            samples = impl.latency(sizes.probes)
            out[name]["latency_ms"] = {
                "p50": 1000 * statistics.median(samples),
                "p99": 1000 * sorted(samples)[int(0.99 * (len(samples) - 1))],
                "samples": len(samples)}
    return out


def hop_chains(sizes: Sizes) -> dict[str, Shape]:
    """The per-hop cost: the handler does nothing, so the bookkeeping is all the difference."""
    return {"chain_long": lambda impl, group: impl.chains(1, sizes.long_chain),
            "chains": lambda impl, group: impl.chains(sizes.chains, sizes.chain_hops)}


def measure_chains(sizes: Sizes, repeat: int) -> dict[str, dict[str, Any]]:
    return _interleaved(hop_chains(sizes), sizes, repeat)


def measure_shapes(sizes: Sizes, repeat: int) -> dict[str, dict[str, Any]]:
    s = sizes
    return _interleaved({
        **hop_chains(sizes),
        "quicksort": lambda impl, group: impl.quicksort(s.sort_size, group),
        "scatter_gather": lambda impl, group: impl.scatter(s.width, group),
    }, sizes, repeat, latency=True)


def measure_scaling(sizes: Sizes, repeat: int) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    chains: dict[str, Shape] = {
        "chains": lambda impl, group: impl.chains(sizes.scaling_chains, sizes.scaling_hops)}
    for pool in ("prefork", "threads"):
        for concurrency in (1, 2, 4):
            measured = _interleaved(chains, sizes, repeat, concurrency=concurrency, pool=pool)
            for name, figures in measured.items():
                out.setdefault(name, {})[f"{pool}_{concurrency}"] = figures["chains"]
    return out


def measure_memory(sizes: Sizes) -> dict[str, Any]:
    engine = Engine(sizes)
    chains = 50
    hops = max(1, sizes.memory_messages // chains)
    with workers(engine) as group:
        before = sum(w.rss_megabytes() for w in group.workers)
        run = engine.chains(chains, hops)
        after = sum(w.rss_megabytes() for w in group.workers)
    return {"messages": run.messages, "per_second": run.messages / run.seconds,
            "rss_before_mb": before, "rss_after_mb": after, "rss_growth_mb": after - before}


def measure_growth(sizes: Sizes, repeat: int, empty: dict[str, Any]) -> dict[str, Any]:
    engine = Engine(sizes)
    seconds = prefill.fill(sizes.finished_incidents, sizes.log_rows)
    with workers(engine):
        full = rates([engine.chains(sizes.chains, sizes.chain_hops) for _ in range(repeat)])
        active = rates([engine.chains(sizes.active_incidents, sizes.active_hops)
                        for _ in range(repeat)])
    return {"prefill_seconds": seconds, "log_rows": MessageLog.objects.count(),
            "chains_empty_log": empty, "chains_full_log": full,
            "full_over_empty_ms": full["ms_per_message"] / empty["ms_per_message"],
            "active_incidents": sizes.active_incidents, "active_incidents_run": active}


def describe() -> dict[str, Any]:
    import platform

    from kombu.utils.url import maybe_sanitize_url

    from wfproject.celery import app

    memory = next((int(line.split()[1]) // 1024 for line in
                   Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal:")), 0)
    return {"broker": maybe_sanitize_url(app.conf.broker_url),
            "database": settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1],
            "locks": "redis" if conf.get("REDIS_URL") else "database",
            "cores": os.cpu_count(), "memory_mb": memory, "python": platform.python_version()}


def purge_leftovers() -> dict[str, int]:
    """Delete the benchmark's queues; the messages that waited there, by queue. RabbitMQ keeps
    what an interrupted run left (bench.suite gives the embedded broker a fresh folder), and
    those messages would be worked on, or refused, during this run's measurements; and a
    queue an older version declared would keep its old arguments (manage.py migrate_queues)."""
    queues = [*registry.registered_queues(), *raw.tasks.queues, *raw_stock.tasks.queues]
    with raw_stock.app.connection_for_write() as conn:
        purged = {name: _purge(conn, name) for name in queues}
    return {name: count for name, count in purged.items() if count}


def _purge(conn: Any, queue: str) -> int:
    channel = conn.channel()
    try:
        return int(channel.queue_delete(queue) or 0)
    except conn.channel_errors:  # RabbitMQ: no such queue (yet), so nothing waits in it
        return 0
    finally:
        channel.close()


def phase_main(name: str, doc: str | None,
               measure_phase: Callable[[Sizes, argparse.Namespace], dict[str, Any]]) -> None:
    """The command line of a phase bench.suite runs after bench.measure (bench/timers.py,
    bench/priority.py): its figures under `name`, with the machine and the sizes."""
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--output", required=True)
    args = parser.parse_args()
    sizes = QUICK if args.quick else Sizes()
    workflow.SetLoggingLevel(logging.WARNING)  # the harness's own sends; workers log apart
    call_command("migrate", verbosity=0)
    purged = purge_leftovers()
    if purged:
        print(f"bench: purged messages an earlier run left in the benchmark's queues: {purged}",
              file=sys.stderr)
    result = {"machine": describe(), "sizes": asdict(sizes), "repeat": args.repeat,
              name: measure_phase(sizes, args)}
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2))


# `chains` is the hop chains of `shapes` alone (a few minutes for the per-hop cost).
PHASES = ("shapes", "chains", "scaling", "memory", "growth")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--phases", default=",".join(PHASES))
    parser.add_argument("--output", required=True)
    args = parser.parse_args()
    sizes = QUICK if args.quick else Sizes()
    phases = [p for p in args.phases.split(",") if p]
    unknown = set(phases) - set(PHASES)
    if unknown:
        parser.error(f"unknown phase(s) {sorted(unknown)}; choose from {', '.join(PHASES)}")
    random.seed(1)
    workflow.SetLoggingLevel(logging.WARNING)  # the harness's own sends; workers log apart
    call_command("migrate", verbosity=0)
    raw_tasks.create_tables()
    result: dict[str, Any] = {"machine": describe(), "sizes": asdict(sizes),
                              "repeat": args.repeat, "purged_at_start": purge_leftovers()}
    if result["purged_at_start"]:
        print(f"bench: purged messages an earlier run left in the benchmark's queues: "
              f"{result['purged_at_start']}", file=sys.stderr)
    if "shapes" in phases:
        result.update(measure_shapes(sizes, args.repeat))
    elif "chains" in phases:
        result.update(measure_chains(sizes, args.repeat))
    if "scaling" in phases:
        result["scaling"] = measure_scaling(sizes, args.repeat)
    if "memory" in phases:
        result["memory"] = measure_memory(sizes)
    if "growth" in phases:
        empty = result.get("engine", {}).get("chains")
        if empty is None:
            with workers(Engine(sizes)):
                empty = rates([Engine(sizes).chains(sizes.chains, sizes.chain_hops)
                               for _ in range(args.repeat)])
        result["growth"] = measure_growth(sizes, args.repeat, empty)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
