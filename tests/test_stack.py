"""`python -m tests.stack`: services count when the project's login works, not when a port
is open (an unrelated PostgreSQL or RabbitMQ on a laptop is passed over with a reason)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading

import pytest
from django.conf import settings

from .conftest import need_service


def stack(command: str, **urls: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **urls}
    return subprocess.run([sys.executable, "-m", "tests.stack", command], env=env,
                          cwd=settings.BASE_DIR, capture_output=True, text=True, timeout=60)


def answer_in_a_foreign_protocol(server: socket.socket) -> None:
    while True:
        try:
            connection, _ = server.accept()
        except OSError:  # the test closed the server
            return
        with connection:
            connection.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")


def test_an_open_port_that_is_not_the_service_is_passed_over_with_the_reason():
    with socket.create_server(("127.0.0.1", 0)) as foreign:
        threading.Thread(target=answer_in_a_foreign_protocol, args=(foreign,), daemon=True).start()
        port = foreign.getsockname()[1]
        urls = {"WF_TEST_POSTGRES_URL": f"postgres://wf:wf@127.0.0.1:{port}/wf",
                "WF_TEST_RABBITMQ_URL": f"amqp://wf:wf@127.0.0.1:{port}/wf",
                "WF_TEST_REDIS_URL": f"redis://127.0.0.1:{port}/0"}
        listed = stack("env", **urls)
        checked = stack("check", **urls)
    assert listed.returncode == 0 and listed.stdout == ""
    for name in urls:
        assert f"tests.stack: not used: {name}: 127.0.0.1:{port}: " in listed.stderr
    assert checked.returncode == 1 and "not usable: WF_TEST_RABBITMQ_URL" in checked.stderr


@pytest.mark.services
def test_a_postgresql_and_rabbitmq_that_refuse_our_login_are_not_used():
    postgres = need_service("WF_TEST_POSTGRES_URL", "PostgreSQL")
    rabbitmq = need_service("WF_TEST_RABBITMQ_URL", "RabbitMQ")
    ours = stack("env", WF_TEST_POSTGRES_URL=postgres, WF_TEST_RABBITMQ_URL=rabbitmq)
    assert f"export WF_TEST_POSTGRES_URL={postgres}" in ours.stdout
    assert f"export WF_TEST_RABBITMQ_URL={rabbitmq}" in ours.stdout
    foreign = stack("env", WF_TEST_POSTGRES_URL=postgres.replace("wf:wf@", "someone:else@"),
                    WF_TEST_RABBITMQ_URL=rabbitmq.replace("wf:wf@", "someone:else@"))
    assert "WF_TEST_POSTGRES_URL" not in foreign.stdout
    assert "WF_TEST_RABBITMQ_URL" not in foreign.stdout
    assert 'password authentication failed for user "someone"' in foreign.stderr
    assert "ACCESS_REFUSED" in foreign.stderr
