"""Which handler serves which queue (a plain table), and loading the workflow modules that
fill it. Binding a queue to its Celery task is the caller's (workflow.RegisterHandler, and
the app's ready() for the engine's own queue): this module imports no other engine module."""
from __future__ import annotations

import importlib
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from incidents import conf
from incidents.exceptions import HandlerRegistrationError, WorkflowConfigError

logger = logging.getLogger(__name__)

CLEANUP_QUEUE = "_Cleanup"
TASK_PREFIX = "workflow."


@dataclass
class HandlerSpec:
    """What the engine knows of a decorated handler function."""

    func: Callable[[dict[str, Any]], Any]
    name: str
    atomic: bool = False
    internal: bool = False
    queues: set[str] = field(default_factory=set)

    @property
    def identity(self) -> tuple[str, str]:
        # A module run as __main__ and imported by name yields two function objects for one
        # definition; both are the same handler.
        code = getattr(self.func, "__code__", None)
        filename = os.path.realpath(code.co_filename) if code else repr(self.func)
        return filename, self.func.__qualname__


@dataclass(frozen=True)
class RetryPolicy:
    """How a queue's handler is retried after a failure (RegisterHandler's retries=...)."""

    retries: int = 0
    backoff: float = 2.0
    retry_on: tuple[type[BaseException], ...] = (Exception,)


#: How many times a handler that raises workflow.Retry is retried when it sets no `retries`.
DEFAULT_RETRY_LIMIT = 3
NO_RETRIES = RetryPolicy()


@dataclass(frozen=True)
class KindSpec:
    """A kind of incident that can be started by name: its first message goes to entry_queue."""

    kind: str
    entry_queue: str
    description: str = ""


_lock = threading.Lock()
_kinds: dict[str, KindSpec] = {}
_by_queue: dict[str, HandlerSpec] = {}
# Handlers are told apart by their function (module and qualified name); two modules may
# each have a `merge_handler`. The short name is what originator, Persist and the graph use.
_queues_by_name: dict[str, set[str]] = {}
_functions_by_name: dict[str, set[tuple[str, str]]] = {}  # short name -> identities
# Only queues with options are here: a plain queue costs a dict lookup that finds nothing.
_retry_policies: dict[str, RetryPolicy] = {}
_schemas: dict[str, Any] = {}  # queue -> its jsonschema validator
load_errors: list[str] = []


def spec_of(handler: Any) -> HandlerSpec | None:
    return getattr(handler, "__workflow_handler__", None)


def register(handler: Any, queue: str, *, time_limit: float | None = None,
             retry: RetryPolicy = NO_RETRIES, schema: Any = None) -> bool:
    """Bind a decorated handler to `queue` (a checked name); True if the queue is new.
    `retry` and `schema` are checked by retry_policy() and schema_validator()."""
    if time_limit is not None and (isinstance(time_limit, bool) or not isinstance(
            time_limit, (int, float)) or time_limit <= 0):
        raise HandlerRegistrationError(
            f"RegisterHandler(): time_limit {time_limit!r} must be a number of seconds > 0, "
            "or None for WORKFLOW_HANDLER_TIME_LIMIT_SECONDS", queue=str(queue))
    spec = spec_of(handler)
    if spec is None:
        raise HandlerRegistrationError(
            f"RegisterHandler(): {handler!r} is not a handler; decorate it with "
            "@workflow.handler before registering it",
            queue=str(queue),
        )
    new = register_spec(spec, queue)
    with _lock:
        _retry_policies.pop(queue, None)
        _schemas.pop(queue, None)
        if retry != NO_RETRIES:
            _retry_policies[queue] = retry
        if schema is not None:
            _schemas[queue] = schema
    return new


def retry_policy(queue: str) -> RetryPolicy:
    return _retry_policies.get(queue, NO_RETRIES)


def schema_of(queue: str) -> Any:
    """The queue's message schema validator (jsonschema), or None."""
    return _schemas.get(queue)


def handler_names_defined_twice() -> dict[str, list[str]]:
    """Short handler names that stand for functions in more than one module: their
    originator, Persist state and graph node are shared. Name -> the definitions."""
    return {name: sorted(f"{path}:{qualname}" for path, qualname in identities)
            for name, identities in sorted(_functions_by_name.items()) if len(identities) > 1}


def register_spec(spec: HandlerSpec, queue: str) -> bool:
    with _lock:
        bound = _by_queue.get(queue)
        if bound is not None and bound.identity != spec.identity:
            raise HandlerRegistrationError(
                f"RegisterHandler(): queue {queue!r} is already bound to handler "
                f"{bound.name!r}; a queue has one handler, so pick another queue name for "
                f"{spec.name!r}",
                queue=queue, handler=spec.name,
            )
        spec.queues.add(queue)
        _by_queue[queue] = spec
        _queues_by_name.setdefault(spec.name, set()).add(queue)
        _functions_by_name.setdefault(spec.name, set()).add(spec.identity)
    logger.debug("handler %s bound to queue %s", spec.name, queue)
    return bound is None


def task_name(queue: str) -> str:
    """The name of the Celery task that delivers `queue`'s messages."""
    return f"{TASK_PREFIX}{queue}"


def handler_for(queue: str) -> HandlerSpec | None:
    return _by_queue.get(queue)


def only_queue_of(handler_name: str) -> str | None:
    """The queue the handlers of this short name serve, if they serve exactly one."""
    queues = _queues_by_name.get(handler_name, ())
    return next(iter(queues)) if len(queues) == 1 else None


def registered_queues() -> list[str]:
    return sorted(_by_queue)


def register_kind(kind: Any, entry_queue: Any, description: Any = "") -> KindSpec:
    """Declare that incidents of `kind` start with a message to `entry_queue` (a checked
    name)."""
    for name, value, limit in (("kind", kind, 100), ("description", description, 1000)):
        if not isinstance(value, str) or len(value) > limit or (name == "kind" and not value.strip()):
            raise HandlerRegistrationError(
                f"RegisterKind(): {name} {value!r:.80} must be a string of at most {limit} "
                "characters" + (", not empty" if name == "kind" else ""))
    spec = KindSpec(kind, entry_queue, description)
    with _lock:
        known = _kinds.get(kind)
        if known is not None and known.entry_queue != entry_queue:
            raise HandlerRegistrationError(
                f"RegisterKind(): kind {kind!r} already starts at queue {known.entry_queue!r}; "
                "a kind has one entry queue", queue=entry_queue)
        _kinds[kind] = spec
    return spec


def kind(name: str) -> KindSpec | None:
    return _kinds.get(name)


def known_kinds() -> list[KindSpec]:
    return [_kinds[name] for name in sorted(_kinds)]


def load_workflow_modules(names: list[str] | None = None) -> None:
    """Import each workflow module and call its RegisterHandlers(); collect what fails."""
    for name in conf.get("MODULES") if names is None else names:
        try:
            module = importlib.import_module(name)
            register_handlers = getattr(module, "RegisterHandlers", None)
            if not callable(register_handlers):
                raise WorkflowConfigError(
                    f"workflow module {name!r} has no RegisterHandlers() function; add one "
                    "that calls workflow.RegisterHandler(handler, queue) for each handler"
                )
            register_handlers()
        except Exception as exc:  # reported by the system check incidents.E001, not fatal here
            logger.error("cannot load workflow module %s: %s", name, exc, exc_info=True)
            load_errors.append(f"{name}: {exc}")
