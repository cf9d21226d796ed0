"""Engine settings come from Django settings, then the environment, then defaults."""
from __future__ import annotations

import http.client
import os
import re
import socket
import subprocess
import sys
import time

import pytest
from django.conf import settings

from incidents import conf
from incidents.exceptions import WorkflowConfigError


def test_the_environment_sets_what_settings_leave_out(monkeypatch, settings):
    monkeypatch.setenv("WORKFLOW_LOCK_LEASE_SECONDS", "12.5")
    assert conf.get("LOCK_LEASE_SECONDS") == 12.5
    settings.WORKFLOW_LOCK_LEASE_SECONDS = 3.0
    assert conf.get("LOCK_LEASE_SECONDS") == 3.0


def test_a_malformed_environment_value_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("WORKFLOW_MAX_MESSAGE_BYTES", "1MB")
    with pytest.raises(WorkflowConfigError, match=r"WORKFLOW_MAX_MESSAGE_BYTES='1MB' is not an? int"):
        conf.get("MAX_MESSAGE_BYTES")


def test_production_mode_refuses_the_default_secret_key():
    env = {**os.environ, "DJANGO_DEBUG": "0"}
    env.pop("DJANGO_SECRET_KEY", None)
    result = subprocess.run([sys.executable, "manage.py", "check"], env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode != 0
    assert "DJANGO_DEBUG is off but DJANGO_SECRET_KEY is not set" in result.stderr


@pytest.mark.parametrize(("raw", "value"), [("0", False), ("no", False), ("1", True), ("True", True)])
def test_boolean_settings_read_yes_and_no(monkeypatch, raw, value):
    monkeypatch.setenv("WORKFLOW_STORE_TASK_RESULTS", raw)
    assert conf.get("STORE_TASK_RESULTS") is value


def test_a_boolean_setting_that_is_neither_is_refused(monkeypatch):
    monkeypatch.setenv("WORKFLOW_STORE_TASK_RESULTS", "maybe")
    with pytest.raises(WorkflowConfigError, match="is not a bool"):
        conf.get("STORE_TASK_RESULTS")


def test_debug_error_pages_never_show_a_password(tmp_path):
    # A foreign Host header is enough to get Django's technical 400 page (DNS rebinding
    # reaches 127.0.0.1); it lists settings and the environment.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    secret = "s3cret-pw-for-this-test"
    env = {**os.environ, "DJANGO_DEBUG": "1", "WF_VAR_DIR": str(tmp_path),
           "CELERY_BROKER_URL": f"amqp://wf:{secret}@127.0.0.1:1/wf",
           "WORKFLOW_REDIS_URL": f"redis://:{secret}@127.0.0.1:1/0",
           "SOME_SERVICE_DSN": f"https://user:{secret}@example.invalid/1"}
    env.pop("DATABASE_URL", None)
    server = subprocess.Popen([sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}",
                               "--noreload", "--skip-checks"], cwd=settings.BASE_DIR, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        pages = {}
        deadline = time.monotonic() + 60
        for host, path in (("rebound.example.com", "/admin/"), ("127.0.0.1", "/no/such/page")):
            while True:
                try:
                    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                    connection.request("GET", path, headers={"Host": host})
                    response = connection.getresponse()
                    pages[host] = (response.status, response.read().decode())
                    break
                except ConnectionRefusedError:
                    assert time.monotonic() < deadline, "runserver did not start"
                    time.sleep(0.2)
    finally:
        server.terminate()
        server.wait(timeout=30)
    status, page = pages["rebound.example.com"]
    assert status == 400 and "DisallowedHost" in page  # the debug page, with its settings
    assert pages["127.0.0.1"][0] == 404
    for _, page in pages.values():
        assert secret not in page


def test_every_setting_is_documented():
    documented = (settings.BASE_DIR / "docs" / "CONFIGURATION.md").read_text()
    missing = [f"WORKFLOW_{name}" for name in conf.DEFAULTS
               if not re.search(rf"`WORKFLOW_{name}`", documented)]
    assert missing == [], f"add these to docs/CONFIGURATION.md: {missing}"
