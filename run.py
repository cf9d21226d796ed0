#!/usr/bin/env python
"""The seed's entry point, kept for people coming from the original: run a worker that
consumes every registered workflow's queues (WORKFLOW_MODULES) and the engine's own.

    python run.py                       # what `celery -A wfproject worker` does
    python run.py -c 4 -l INFO -Q quicksort_split,quicksort_merge

Any `celery worker` option can follow; this is a thin wrapper over the Celery worker.
"""
from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    from wfproject.celery import app

    app.worker_main(["worker", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    main()
