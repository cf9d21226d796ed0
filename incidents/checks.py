"""System checks: configuration mistakes found by `manage.py check` and at worker start."""
from __future__ import annotations

from typing import Any

from django.core.checks import Error, register

from incidents.engine import registry


@register()
def workflow_modules_load(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    return [
        Error(
            f"workflow module failed to load: {problem}",
            hint="Fix the module, or remove it from WORKFLOW_MODULES (comma-separated "
                 "dotted paths, each module defining RegisterHandlers()).",
            id="incidents.E001",
        )
        for problem in registry.load_errors
    ]
