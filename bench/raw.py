"""The baseline: the benchmark's shapes as plain Celery tasks, no bookkeeping.

Same broker, worker settings (celeryconfig: JSON, acks late, prefetch 1, durable queues) and
database as the engine; `celery -A bench.raw worker -Q raw_hop,raw_split,...` consumes them.
Each task calls apply_async to a named queue, as a hand-written Celery pipeline would. The
only database work is what the shape needs: a row when a chain or sort ends (so the
benchmark knows), and for fan-in a counter per parent (a hand-rolled chord).
"""
from __future__ import annotations

import os
import time
from typing import Any

from celery import Celery
from kombu.transport import TRANSPORT_ALIASES

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wfproject.settings")
TRANSPORT_ALIASES.setdefault("wffs", "incidents.engine.fsbroker:Transport")

app = Celery("rawbench")
app.config_from_object("celeryconfig")
app.conf.update(result_backend=None, task_ignore_result=True,
                worker_consumer="celery.worker.consumer:Consumer")

QUEUES = ["raw_hop", "raw_split", "raw_merge", "raw_work", "raw_gather", "raw_probe"]
LEAF_SIZE = 16  # as workflows/quicksort.py

TABLES = [
    "CREATE TABLE IF NOT EXISTS bench_raw_done (run VARCHAR(64), item VARCHAR(64), "
    "started DOUBLE PRECISION, finished DOUBLE PRECISION)",
    "CREATE TABLE IF NOT EXISTS bench_raw_part (run VARCHAR(64), parent VARCHAR(2000), "
    "node VARCHAR(2000), data TEXT)",
    "CREATE TABLE IF NOT EXISTS bench_raw_count (run VARCHAR(64), parent VARCHAR(2000), "
    "n INTEGER, PRIMARY KEY (run, parent))",
]


def create_tables() -> None:
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


@app.task(name="raw.hop", acks_late=True)
def hop(run: str, item: str, left: int, started: float) -> None:
    if left <= 0:
        _done(run, item, started)
    else:
        hop.apply_async((run, item, left - 1, started), queue="raw_hop")


@app.task(name="raw.probe", acks_late=True)
def probe(run: str, item: str, sent_at: float) -> None:
    _sql("INSERT INTO bench_raw_done (run, item, started, finished) VALUES (%s, %s, %s, %s)",
         [run, item, sent_at, time.time()])


@app.task(name="raw.split", acks_late=True)
def split(run: str, node: str, numbers: list[int], started: float) -> None:
    pivot = sorted((numbers[0], numbers[len(numbers) // 2], numbers[-1]))[1]
    _merge_later(run, node + "M", [n for n in numbers if n == pivot], started)
    for side, part in (("L", [n for n in numbers if n < pivot]),
                       ("R", [n for n in numbers if n > pivot])):
        if len(part) <= LEAF_SIZE:
            _merge_later(run, node + side, sorted(part), started)
        else:
            split.apply_async((run, node + side, part, started), queue="raw_split")


def _merge_later(run: str, node: str, values: list[int], started: float) -> None:
    merge.apply_async((run, node, values, started), queue="raw_merge")


@app.task(name="raw.merge", acks_late=True)
def merge(run: str, node: str, values: list[int], started: float) -> None:
    import json

    if node == "r":  # the result: the benchmark checks it says "sorted <size>"
        _done(run, f"{'sorted' if values == sorted(values) else 'unsorted'} {len(values)}",
              started)
        return
    # Sibling names end L, M, R: sorted by name they are in value order.
    parts = _arrived(run, node[:-1], node, json.dumps(values), expected=3)
    if parts is not None:
        joined = [n for part in parts for n in json.loads(part)]
        _merge_later(run, node[:-1], joined, started)


def start_sort(run: str, numbers: list[int], started: float) -> None:
    if len(numbers) <= LEAF_SIZE:
        _merge_later(run, "r", sorted(numbers), started)
    else:
        split.apply_async((run, "r", numbers, started), queue="raw_split")


@app.task(name="raw.scatter", acks_late=True)
def scatter(run: str, width: int, started: float) -> None:
    for n in range(width):
        work.apply_async((run, n, width, started), queue="raw_work")


@app.task(name="raw.work", acks_late=True)
def work(run: str, n: int, width: int, started: float) -> None:
    gather.apply_async((run, n, sum(range(n % 100)), width, started), queue="raw_gather")


@app.task(name="raw.gather", acks_late=True)
def gather(run: str, n: int, value: int, width: int, started: float) -> None:
    if _arrived(run, "all", str(n), str(value), expected=width) is not None:
        _done(run, "gather", started)
