"""The baselines' code: the benchmark's shapes as plain Celery tasks, no bookkeeping.

One copy, registered on two apps: bench/raw.py (the engine's Celery settings) and
bench/raw_stock.py (stock Celery), each with its own task names and queues
(`<prefix>_hop`, ...) so both workers run side by side. Each task calls apply_async to a
named queue, as a hand-written Celery pipeline would. The only database work is what the
shape needs: a row when a chain or sort ends (so the benchmark knows), and for fan-in a
counter per parent (a hand-rolled chord).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from celery import Celery

LEAF_SIZE = 16  # as workflows/quicksort.py
QUEUE_NAMES = ("hop", "split", "merge", "work", "gather", "probe")

TABLES = [
    "CREATE TABLE IF NOT EXISTS bench_raw_done (run VARCHAR(64), item VARCHAR(64), "
    "started DOUBLE PRECISION, finished DOUBLE PRECISION)",
    "CREATE TABLE IF NOT EXISTS bench_raw_part (run VARCHAR(64), parent VARCHAR(2000), "
    "node VARCHAR(2000), data TEXT)",
    "CREATE TABLE IF NOT EXISTS bench_raw_count (run VARCHAR(64), parent VARCHAR(2000), "
    "n INTEGER, PRIMARY KEY (run, parent))",
]


def create_tables() -> None:
    """Both baselines share the tables: each run has its own id."""
    from django.db import connection

    with connection.cursor() as cursor:
        for statement in TABLES:
            cursor.execute(statement)


def _sql(statement: str, params: list[Any]) -> list[tuple[Any, ...]]:
    from django.db import connection, transaction

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


def _done(run: str, item: str, started: float) -> None:
    _sql("INSERT INTO bench_raw_done (run, item, started, finished) VALUES (%s, %s, %s, %s)",
         [run, item, started, time.time()])


def _arrived(run: str, parent: str, node: str, data: str, expected: int) -> list[str] | None:
    """Record one child's result; return all of the parent's once the last one is in."""
    from django.db import connection, transaction

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("INSERT INTO bench_raw_part (run, parent, node, data) "
                       "VALUES (%s, %s, %s, %s)", [run, parent, node, data])
        cursor.execute("INSERT INTO bench_raw_count (run, parent, n) VALUES (%s, %s, 1) "
                       "ON CONFLICT (run, parent) DO UPDATE SET n = bench_raw_count.n + 1 "
                       "RETURNING n", [run, parent])
        if cursor.fetchone()[0] < expected:
            return None
        cursor.execute("SELECT node, data FROM bench_raw_part WHERE run = %s AND parent = %s "
                       "ORDER BY node", [run, parent])
        return [data for _node, data in sorted(cursor.fetchall())]


@dataclass(frozen=True)
class RawTasks:
    """One baseline's tasks, as the benchmark starts them."""

    prefix: str
    hop: Any
    probe: Any
    split: Any
    merge: Any
    scatter: Any

    def queue(self, name: str) -> str:
        return f"{self.prefix}_{name}"

    @property
    def queues(self) -> list[str]:
        return [self.queue(name) for name in QUEUE_NAMES]

    def start_sort(self, run: str, numbers: list[int], started: float) -> None:
        if len(numbers) <= LEAF_SIZE:
            self.merge.apply_async((run, "r", sorted(numbers), started), queue=self.queue("merge"))
        else:
            self.split.apply_async((run, "r", numbers, started), queue=self.queue("split"))


def register(app: Celery, prefix: str) -> RawTasks:
    """Define the shapes' tasks on `app`, named `<prefix>.hop`, ... on queues `<prefix>_hop`, ...

    Not shared: Celery would otherwise add every app's copy to every other app in the process.
    """
    def queue(name: str) -> str:
        return f"{prefix}_{name}"

    @app.task(name=f"{prefix}.hop", acks_late=True, shared=False)
    def hop(run: str, item: str, left: int, started: float) -> None:
        if left <= 0:
            _done(run, item, started)
        else:
            hop.apply_async((run, item, left - 1, started), queue=queue("hop"))

    @app.task(name=f"{prefix}.probe", acks_late=True, shared=False)
    def probe(run: str, item: str, sent_at: float) -> None:
        _done(run, item, sent_at)

    @app.task(name=f"{prefix}.split", acks_late=True, shared=False)
    def split(run: str, node: str, numbers: list[int], started: float) -> None:
        pivot = sorted((numbers[0], numbers[len(numbers) // 2], numbers[-1]))[1]
        merge_later(run, node + "M", [n for n in numbers if n == pivot], started)
        for side, part in (("L", [n for n in numbers if n < pivot]),
                           ("R", [n for n in numbers if n > pivot])):
            if len(part) <= LEAF_SIZE:
                merge_later(run, node + side, sorted(part), started)
            else:
                split.apply_async((run, node + side, part, started), queue=queue("split"))

    def merge_later(run: str, node: str, values: list[int], started: float) -> None:
        merge.apply_async((run, node, values, started), queue=queue("merge"))

    @app.task(name=f"{prefix}.merge", acks_late=True, shared=False)
    def merge(run: str, node: str, values: list[int], started: float) -> None:
        if node == "r":  # the result: the benchmark checks it says "sorted <size>"
            _done(run, f"{'sorted' if values == sorted(values) else 'unsorted'} {len(values)}",
                  started)
            return
        # Sibling names end L, M, R: sorted by name they are in value order.
        parts = _arrived(run, node[:-1], node, json.dumps(values), expected=3)
        if parts is not None:
            joined = [n for part in parts for n in json.loads(part)]
            merge_later(run, node[:-1], joined, started)

    @app.task(name=f"{prefix}.scatter", acks_late=True, shared=False)
    def scatter(run: str, width: int, started: float) -> None:
        for n in range(width):
            work.apply_async((run, n, width, started), queue=queue("work"))

    @app.task(name=f"{prefix}.work", acks_late=True, shared=False)
    def work(run: str, n: int, width: int, started: float) -> None:
        gather.apply_async((run, n, sum(range(n % 100)), width, started), queue=queue("gather"))

    @app.task(name=f"{prefix}.gather", acks_late=True, shared=False)
    def gather(run: str, n: int, value: int, width: int, started: float) -> None:
        if _arrived(run, "all", str(n), str(value), expected=width) is not None:
            _done(run, "gather", started)

    return RawTasks(prefix, hop=hop, probe=probe, split=split, merge=merge, scatter=scatter)
