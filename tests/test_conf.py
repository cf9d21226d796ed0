"""Engine settings come from Django settings, then the environment, then defaults."""
from __future__ import annotations

import pytest

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
    import os
    import subprocess
    import sys

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
