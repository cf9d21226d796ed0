"""Message contracts: a queue's JSON Schema, checked when a message is sent and received."""
from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from incidents.engine import registry
from incidents.exceptions import HandlerRegistrationError

#: The keys the engine adds to every message before its handler sees it; a schema is checked
#: against the message as delivered, so it may require them but need not mention them.
ENGINE_KEYS = ("IncidentID", "MessageID", "originator")


def compile_schema(schema: Any, queue: str) -> Draft202012Validator:
    """A validator for `schema` (a JSON Schema, draft 2020-12), or HandlerRegistrationError."""
    if not isinstance(schema, dict):
        raise HandlerRegistrationError(
            f"RegisterHandler(): schema {schema!r:.80} of queue {queue!r} is a "
            f"{type(schema).__name__}; give a JSON Schema as a dict, e.g. "
            "{'type': 'object', 'required': ['size']}", queue=queue)
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = "".join(f"[{part!r}]" for part in exc.absolute_path) or " (top level)"
        raise HandlerRegistrationError(
            f"RegisterHandler(): the schema of queue {queue!r} is not a valid JSON Schema: "
            f"schema{where}: {exc.message}", queue=queue) from None
    return Draft202012Validator(schema)


def violation(queue: str, message: Any) -> str | None:
    """Why `message` breaks `queue`'s schema (its first error, by field path and rule), or
    None: it matches, or the queue has no schema."""
    validator = registry.schema_of(queue)
    if validator is None:
        return None
    error = next(iter(sorted(validator.iter_errors(message), key=lambda e: list(e.path))),
                 None)
    if error is None:
        return None
    path = "message" + "".join(f"[{part!r}]" for part in error.absolute_path)
    return (f"{path} is {error.instance!r:.80}: {error.message} "
            f"(schema of queue {queue}, {error.validator})")
