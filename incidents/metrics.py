"""Prometheus metrics at /metrics (WORKFLOW_METRICS=1), read from the database and the broker
at scrape time, so one scrape of the admin app sees the work of every worker."""
from __future__ import annotations

import hmac
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from django.db.models import Count, Q, Sum
from django.http import HttpRequest, HttpResponse, HttpResponseNotFound
from django.utils import timezone
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric

from incidents import conf
from incidents.engine import deadletter
from incidents.models import Incident, MessageLog, MessageStatus

DURATION_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0, 600.0, 3600.0)
LOCK_WAIT_BUCKETS = (0.001, 0.01, 0.1, 1.0, 10.0, 60.0, 600.0)


def _histogram(name: str, documentation: str, column: str, buckets: tuple[float, ...],
               rows: Any) -> HistogramMetricFamily:
    """A histogram per queue over a log column, counted by the database in one query."""
    family = HistogramMetricFamily(name, documentation, labels=["queue"])
    counts = {f"le_{i}": Count("id", filter=Q(**{f"{column}__lte": bound}))
              for i, bound in enumerate(buckets)}
    per_queue = (rows.filter(**{f"{column}__isnull": False}).order_by().values("destination")
                 .annotate(total=Count("id"), seconds=Sum(column), **counts))
    for row in per_queue:
        cumulative = [(str(bound), row[f"le_{i}"]) for i, bound in enumerate(buckets)]
        family.add_metric([row["destination"]], [*cumulative, ("+Inf", row["total"])],
                          row["seconds"] or 0.0)
    return family


class WorkflowCollector:
    def collect(self) -> Iterator[Metric]:
        incidents = GaugeMetricFamily("workflow_incidents", "Incidents by status.",
                                      labels=["status"])
        for row in Incident.objects.order_by().values("status").annotate(n=Count("id")):
            incidents.add_metric([row["status"]], row["n"])
        yield incidents

        messages = GaugeMetricFamily("workflow_messages", "Messages in the log by queue and "
                                     "status.", labels=["queue", "status"])
        for row in (MessageLog.objects.order_by().values("destination", "status")
                    .annotate(n=Count("id"))):
            messages.add_metric([row["destination"], row["status"]], row["n"])
        yield messages

        finished = MessageLog.objects.filter(
            status__in=[MessageStatus.COMPLETE, MessageStatus.ERROR])
        yield _histogram("workflow_handler_duration_seconds", "Handling time of finished "
                         "messages, by queue.", "duration", DURATION_BUCKETS, finished)
        yield _histogram("workflow_lock_wait_seconds", "Time messages to @atomic handlers "
                         "waited for their lock, by queue.", "lock_wait", LOCK_WAIT_BUCKETS,
                         MessageLog.objects.all())

        stale = timezone.now() - timedelta(seconds=conf.get("RELAY_STALE_SECONDS"))
        yield GaugeMetricFamily(
            "workflow_outbox_backlog", "Messages committed but not published for longer than "
            "WORKFLOW_RELAY_STALE_SECONDS (the relay's work).",
            value=MessageLog.objects.filter(status=MessageStatus.QUEUED,
                                            submitted__lt=stale).count())
        yield GaugeMetricFamily("workflow_dead_letters", "Messages waiting in the dead-letter "
                                "queue for an operator.", value=deadletter.count())


def registry() -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(WorkflowCollector())  # type: ignore[arg-type]
    return registry


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """Off (404) unless WORKFLOW_METRICS is on; with WORKFLOW_METRICS_TOKEN set, scrapers
    must send `Authorization: Bearer <token>`."""
    if not conf.get("METRICS"):
        return HttpResponseNotFound("metrics are off: set WORKFLOW_METRICS=1")
    token = conf.get("METRICS_TOKEN")
    sent = request.headers.get("Authorization", "")
    if token and not hmac.compare_digest(sent.encode(), f"Bearer {token}".encode()):
        return HttpResponse("send Authorization: Bearer <WORKFLOW_METRICS_TOKEN>", status=401,
                            content_type="text/plain")
    return HttpResponse(generate_latest(registry()), content_type=CONTENT_TYPE_LATEST)
