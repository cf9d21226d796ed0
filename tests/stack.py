"""Which test services are ours and up: `python -m tests.stack env` prints their URLs as
shell exports (and on stderr, one line per service it passed over and why);
`python -m tests.stack check` fails naming what is missing.

A service counts only when the project's login works: an unrelated PostgreSQL or RabbitMQ on
the default port (common on a laptop) is passed over, not used and failed on.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Callable
from urllib.parse import urlsplit

DEFAULTS = {
    "WF_TEST_RABBITMQ_URL": "amqp://wf:wf@127.0.0.1:5672/wf",
    "WF_TEST_POSTGRES_URL": "postgres://wf:wf@127.0.0.1:5432/wf",
    "WF_TEST_REDIS_URL": "redis://127.0.0.1:6379/0",
}
TIMEOUT_SECONDS = 3


def _rabbitmq(url: str) -> None:
    from kombu import Connection

    with Connection(url, connect_timeout=TIMEOUT_SECONDS) as connection:
        connection.connect()


def _postgres(url: str) -> None:
    import psycopg

    psycopg.connect(url, connect_timeout=TIMEOUT_SECONDS).close()


def _redis(url: str) -> None:
    import redis

    redis.Redis.from_url(url, socket_timeout=TIMEOUT_SECONDS).ping()


LOG_IN: dict[str, Callable[[str], None]] = {
    "WF_TEST_RABBITMQ_URL": _rabbitmq, "WF_TEST_POSTGRES_URL": _postgres,
    "WF_TEST_REDIS_URL": _redis}


def refusal(name: str, url: str) -> str | None:
    """Why the service at `url` cannot be used (None: logged in)."""
    try:
        LOG_IN[name](url)
    except Exception as exc:  # each client library has its own errors
        where = urlsplit(url)
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return f"{name}: {where.hostname}:{where.port}: {first_line}"
    return None


def examine() -> tuple[dict[str, str], list[str]]:
    """The services that let us in, and why the others did not."""
    found, refused = {}, []
    for name, default in DEFAULTS.items():
        url = os.environ.get(name) or default
        why = refusal(name, url)
        if why is None:
            found[name] = url
        else:
            refused.append(why)
    return found, refused


def available() -> dict[str, str]:
    return examine()[0]


if __name__ == "__main__":
    found, refused = examine()
    if sys.argv[1:] == ["env"]:
        for name, url in found.items():
            print(f"export {name}={url}")
        for why in refused:
            print(f"tests.stack: not used: {why}", file=sys.stderr)
    if sys.argv[1:] == ["check"] and refused:
        sys.exit("not usable: " + "; ".join(refused) + ". Start the project's services with "
                 "`sudo .ci/services` (needs rabbitmq-server, postgresql, redis-server) or "
                 "set the WF_TEST_*_URL variables")
