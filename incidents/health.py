"""Is this deployment able to work? The database, the broker and (if locks live there) Redis,
each asked to answer within a few seconds. Served at /health/ for load balancers and compose."""
from __future__ import annotations

from collections.abc import Callable

from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from incidents import conf
from incidents.engine import celery_app

TIMEOUT_SECONDS = 3


def _database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _broker() -> None:
    app = celery_app.get()
    with app.connection_for_write() as broker:
        broker.ensure_connection(max_retries=1, timeout=TIMEOUT_SECONDS)


def _redis() -> None:
    import redis

    redis.Redis.from_url(conf.get("REDIS_URL"), socket_timeout=TIMEOUT_SECONDS,
                         socket_connect_timeout=TIMEOUT_SECONDS).ping()


def checks() -> dict[str, str]:
    """"ok" or what went wrong (the error's type and message), per service."""
    probes: dict[str, Callable[[], None]] = {"database": _database, "broker": _broker}
    if conf.get("REDIS_URL"):
        probes["redis"] = _redis
    report = {}
    for name, probe in probes.items():
        try:
            probe()
            report[name] = "ok"
        except Exception as exc:  # any failure is the answer, not an error of this view
            report[name] = f"{type(exc).__name__}: {exc}"[:300]
    return report


@require_GET
def health(request: HttpRequest) -> JsonResponse:
    """200 with every check "ok", 503 naming what failed (errors as the drivers word them:
    they name hosts, never passwords)."""
    report = checks()
    healthy = all(state == "ok" for state in report.values())
    return JsonResponse({"status": "ok" if healthy else "unavailable", "checks": report},
                        status=200 if healthy else 503)
