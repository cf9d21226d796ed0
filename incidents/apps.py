"""App wiring: register the engine's own handlers and load the workflow modules."""
from __future__ import annotations

from django.apps import AppConfig


class IncidentsConfig(AppConfig):
    name = "incidents"
    verbose_name = "Incidents"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from incidents import checks  # noqa: F401  (registers the system checks)
        from incidents.engine import cleanup, registry, tasks

        registry.register_spec(cleanup.cleanup_spec, registry.CLEANUP_QUEUE)
        tasks.bind_queue(registry.CLEANUP_QUEUE)
        registry.load_workflow_modules()
