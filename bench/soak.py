"""A soak: many concurrent incidents through several workers; checks nothing is lost or
handled twice, and measures the message rate and worker memory from start to end.

    python -m bench.soak --incidents 1000 --hops 200 --workers 2    # 201,000 messages
    python -m bench.soak --incidents 50 --hops 20 --sample-seconds 1   # a short run

Uses the configured stack (CELERY_BROKER_URL, DATABASE_URL); writes var/soak-results.json.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.db.models import Count
from kombu.utils.url import maybe_sanitize_url

from incidents import workflow  # first: importing it sets Django up for this script
from incidents.models import FINAL_STATUSES, Incident, MessageLog, MessageStatus
from incidents.processes import WorkerGroup, worker_env


def run(incidents: int, hops: int, workers: int, concurrency: int, timeout: float,
        sample_seconds: float = 10) -> dict[str, Any]:
    """Run the soak and return its figures and checks."""
    from wfproject.celery import app

    call_command("migrate", verbosity=0)
    expected = incidents * (hops + 1)
    with WorkerGroup(env=worker_env({"WORKFLOW_MODULES": "bench.handlers"})) as group:
        for n in range(workers):
            group.start(f"soak{n + 1}", concurrency=concurrency)
        ids = [workflow.CreateIncident(name=f"soak {n}", kind="SOAK") for n in range(incidents)]
        for incident_id in ids:
            workflow.send(message={"IncidentID": incident_id, "left": hops}, queue="soak_hop")
        workflow.FlushMessages()
        started = time.monotonic()
        samples: list[dict[str, float]] = []
        handled = 0
        while handled < expected and time.monotonic() - started < timeout:
            time.sleep(sample_seconds)
            handled = MessageLog.objects.filter(incident_id__in=ids, destination="soak_hop",
                                                status=MessageStatus.COMPLETE).count()
            samples.append({"seconds": round(time.monotonic() - started, 1), "handled": handled,
                            "rss_mb": round(sum(w.rss_megabytes() for w in group.workers), 1)})
            print(json.dumps(samples[-1]), flush=True)
        elapsed = time.monotonic() - started
        deadline = time.monotonic() + 120
        while (Incident.objects.filter(pk__in=ids, cleaned_at__isnull=True).exists()
               and time.monotonic() < deadline):
            time.sleep(1)
    log = MessageLog.objects.filter(incident_id__in=ids)
    hop_counts = {str(incident_id): n for incident_id, n in
                  log.filter(destination="soak_hop").values("incident_id")
                  .annotate(n=Count("id")).values_list("incident_id", "n")}
    result: dict[str, Any] = {
        "incidents": incidents, "hops": hops, "workers": workers, "concurrency": concurrency,
        "broker": maybe_sanitize_url(app.conf.broker_url),
        "database": settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1],
        "expected_hop_messages": expected, "seconds": round(elapsed, 1),
        "messages_complete": log.filter(status=MessageStatus.COMPLETE).count(),
        "complete_incidents": Incident.objects.filter(pk__in=ids, status="COMPLETE").count(),
        "cleaned_incidents": Incident.objects.filter(pk__in=ids, cleaned_at__isnull=False).count(),
        "stuck_messages": log.exclude(status__in=FINAL_STATUSES).count(),
        "error_messages": log.filter(status=MessageStatus.ERROR).count(),
        "incidents_with_lost_or_extra_hops": len(
            [i for i in ids if hop_counts.get(i) != hops + 1]),
        "samples": samples,
    }
    result.update(rates(samples, expected))
    return result


def rates(samples: list[dict[str, float]], expected: int) -> dict[str, float]:
    """Messages per second early (10-30% of the work done) and late (70-90%), and memory."""
    def at(fraction: float) -> dict[str, float] | None:
        return next((x for x in samples if x["handled"] >= fraction * expected), None)

    found = [at(f) for f in (0.1, 0.3, 0.7, 0.9)]
    points = [p for p in found if p is not None]
    if len(points) < 4 or len({p["seconds"] for p in points}) < 4:
        return {}
    a, b, c, d = points
    early = (b["handled"] - a["handled"]) / (b["seconds"] - a["seconds"])
    late = (d["handled"] - c["handled"]) / (d["seconds"] - c["seconds"])
    return {"rate_early_per_s": round(early, 1), "rate_late_per_s": round(late, 1),
            "late_over_early": round(late / early, 2),
            "rss_first_mb": samples[0]["rss_mb"], "rss_max_mb": max(x["rss_mb"] for x in samples),
            "rss_last_mb": samples[-1]["rss_mb"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--incidents", type=int, default=1000)
    parser.add_argument("--hops", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--sample-seconds", type=float, default=10)
    parser.add_argument("--output", default=str(Path(settings.VAR_DIR) / "soak-results.json"))
    args = parser.parse_args()
    result = run(args.incidents, args.hops, args.workers, args.concurrency, args.timeout,
                 args.sample_seconds)
    Path(args.output).write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=2))


if __name__ == "__main__":
    main()
