"""System checks: configuration mistakes found by `manage.py check` and at worker start."""
from __future__ import annotations

from typing import Any

from django.core.checks import Error, register
from django.core.checks import Warning as CheckWarning
from django.db import DatabaseError

from incidents import conf
from incidents.engine import registry
from incidents.models import MessageLog


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


#: How many of the newest log rows the unregistered-destination check reads.
RECENT_MESSAGES = 10_000


@register()
def destinations_have_handlers(app_configs: Any = None, **kwargs: Any) -> list[CheckWarning]:
    """Queues the recent message log sends to that no loaded module registers: a renamed or
    removed handler, or a module missing from WORKFLOW_MODULES. Quiet while nothing is
    registered (a process that loads no workflow module knows no queue)."""
    registered = {q for q in registry.registered_queues() if not q.startswith("_")}
    if not registered:
        return []
    try:
        recent = set(MessageLog.objects.order_by("-submitted")
                     .values_list("destination", flat=True)[:RECENT_MESSAGES])
    except DatabaseError:  # no database yet (before migrate): nothing to compare
        return []
    missing = sorted(q for q in recent - registered if not q.startswith("_"))
    return [CheckWarning(
        f"queue {queue!r} receives messages (in the newest {RECENT_MESSAGES:,} of the message "
        "log) but no loaded workflow module registers a handler for it",
        hint="Add the module that calls RegisterHandler(..., queue=...) to WORKFLOW_MODULES, "
             "or register the renamed handler under its old queue until those messages end.",
        id="incidents.W001") for queue in missing]


@register()
def handlers_registered_once(app_configs: Any = None, **kwargs: Any) -> list[CheckWarning]:
    """A module listed twice in WORKFLOW_MODULES, and one handler name defined in two
    modules (they would share their originator, Persist state and graph node)."""
    listed = list(conf.get("MODULES"))
    warnings = [CheckWarning(f"workflow module {name!r} is listed {listed.count(name)} times in "
                        "WORKFLOW_MODULES", hint="List each module once.", id="incidents.W002")
                for name in sorted(set(listed)) if listed.count(name) > 1]
    warnings += [CheckWarning(
        f"handler name {name!r} is defined by {len(where)} functions: {', '.join(where)}",
        hint="Rename one: messages, Persist state and the graph know a handler by its name.",
        id="incidents.W003") for name, where in registry.handler_names_defined_twice().items()]
    return warnings
