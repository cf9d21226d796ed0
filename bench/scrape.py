"""How long one /metrics scrape takes over a large message log (the collector counts the
whole log at scrape time).

    python -m bench.scrape --rows 1000000      # fills the configured database up to that size

Uses the configured stack (DATABASE_URL, CELERY_BROKER_URL); point it at a scratch database.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

from django.core.management import call_command
from prometheus_client import generate_latest

from incidents import workflow  # noqa: F401  (first: importing it sets Django up)
from incidents.metrics import registry
from incidents.models import MessageLog

from . import prefill


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="log rows to scrape over")
    parser.add_argument("--repeat", type=int, default=5, help="scrapes to time")
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    have = MessageLog.objects.count()
    if have < args.rows:
        prefill.fill(max(1, args.rows // 100), args.rows - have)
    seconds = []
    for _ in range(args.repeat):
        started = time.monotonic()
        size = len(generate_latest(registry()))
        seconds.append(time.monotonic() - started)
    print(json.dumps({"log_rows": MessageLog.objects.count(), "bytes": size,
                      "scrape_seconds": {"median": round(statistics.median(seconds), 3),
                                         "min": round(min(seconds), 3),
                                         "max": round(max(seconds), 3)}}))


if __name__ == "__main__":
    main()
