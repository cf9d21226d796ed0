"""Configuration mistakes surface as system checks."""
from __future__ import annotations

from incidents.checks import workflow_modules_load
from incidents.engine import registry


def test_a_workflow_module_that_fails_to_load_is_a_system_check_error(monkeypatch):
    monkeypatch.setattr(registry, "load_errors", [])
    registry.load_workflow_modules(["workflows.no_such_module", "incidents.conf"])
    errors = workflow_modules_load()
    assert [e.id for e in errors] == ["incidents.E001", "incidents.E001"]
    assert "No module named 'workflows.no_such_module'" in errors[0].msg
    assert "has no RegisterHandlers() function" in errors[1].msg
