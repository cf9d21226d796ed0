"""Which test services are reachable: `python -m tests.stack env` prints their URLs as
shell exports; `python -m tests.stack check` fails naming what is missing."""
from __future__ import annotations

import os
import socket
import sys
from urllib.parse import urlsplit

DEFAULTS = {
    "WF_TEST_RABBITMQ_URL": "amqp://wf:wf@127.0.0.1:5672/wf",
    "WF_TEST_POSTGRES_URL": "postgres://wf:wf@127.0.0.1:5432/wf",
    "WF_TEST_REDIS_URL": "redis://127.0.0.1:6379/0",
}


def reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), timeout=2):
            return True
    except OSError:
        return False


def available() -> dict[str, str]:
    urls = {name: os.environ.get(name) or default for name, default in DEFAULTS.items()}
    return {name: url for name, url in urls.items() if reachable(url)}


if __name__ == "__main__":
    found = available()
    if sys.argv[1:] == ["env"]:
        for name, url in found.items():
            print(f"export {name}={url}")
    missing = sorted(set(DEFAULTS) - set(found))
    if sys.argv[1:] == ["check"] and missing:
        sys.exit(f"not reachable: {', '.join(missing)}; start them with `.ci/services` "
                 "(needs rabbitmq-server, postgresql, redis-server) or set the URLs")
