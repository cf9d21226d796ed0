"""Stopping and starting the test services (RabbitMQ, PostgreSQL, Redis) on 127.0.0.1."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from ..conftest import REQUIRE_SERVICES


def need_control(*programs: str) -> None:
    """Skip (in CI: fail) unless this process may stop and start the services."""
    missing = [p for p in programs if shutil.which(p) is None]
    if missing or os.geteuid() != 0:
        why = (f"cannot control the services: {'missing ' + ', '.join(missing) if missing else ''}"
               f"{' not root' if os.geteuid() != 0 else ''}")
        if REQUIRE_SERVICES:
            pytest.fail(why)
        pytest.skip(why)


def run(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True, timeout=180)


def rabbitmq(action: str) -> None:
    run("rabbitmqctl", "-n", "rabbit@localhost", f"{action}_app")


def postgres_restart() -> None:
    version, name = subprocess.run(["pg_lsclusters", "-h"], check=True, capture_output=True,
                                   text=True).stdout.split()[:2]
    run("pg_ctlcluster", version, name, "restart")


def redis_stop() -> None:
    run("redis-cli", "-h", "127.0.0.1", "shutdown", "nosave")


def redis_start() -> None:
    run("redis-server", "--bind", "127.0.0.1", "--port", "6379", "--protected-mode", "yes",
        "--daemonize", "yes", "--save", "", "--appendonly", "no")
