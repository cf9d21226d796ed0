"""Checks on values crossing the API: queue names, incident ids, JSON bodies."""
from __future__ import annotations

import json
import math
import re
import uuid
from typing import Any

from incidents.exceptions import MessageError, MessageTypeError, QueueNameError

NUL_FAULT = "contains a NUL character (\\x00), which the database cannot store; remove it"
_QUEUE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:-]{0,199}")
MAX_DEPTH = 100  # nesting of JSON values; deeper is refused before any serialiser recurses
MAX_INT_BITS = 10_000  # about 3,000 digits; larger integers do not survive every JSON parser


def check_queue_name(queue: Any, *, internal_ok: bool = False) -> str:
    """Return `queue` if it is a usable queue name, else raise QueueNameError."""
    if not isinstance(queue, str) or not _QUEUE_NAME.fullmatch(queue):
        raise QueueNameError(
            f"queue {queue!r} is not a valid queue name; use 1-200 characters from "
            "letters, digits and _ . : - (not starting with . : or -)",
            queue=str(queue),
        )
    if queue.startswith("amq."):
        raise QueueNameError(
            f"queue {queue!r} starts with 'amq.', which RabbitMQ reserves for its own queues "
            "and refuses to declare; choose another name", queue=queue)
    if queue.startswith("_") and not internal_ok:
        raise QueueNameError(
            f"queue {queue!r} starts with '_', which is reserved for the engine's own queues; "
            "choose a name without the leading underscore",
            queue=queue,
        )
    return queue


#: The original's health check sends {"IncidentID": "test_workflow_health"} to a test
#: workflow: that name stands for one fixed incident, made (or reopened) when a probe is sent.
HEALTH_CHECK_INCIDENT = "test_workflow_health"
HEALTH_CHECK_INCIDENT_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "urn:incidents:" + HEALTH_CHECK_INCIDENT))


def check_incident_id(incident_id: Any, *, where: str) -> str:
    """Return the canonical string form of an IncidentID, or raise a clear error."""
    if isinstance(incident_id, uuid.UUID):
        return str(incident_id)
    if incident_id == HEALTH_CHECK_INCIDENT:
        return HEALTH_CHECK_INCIDENT_ID
    if not isinstance(incident_id, str):
        raise MessageTypeError(
            f"{where}: IncidentID {incident_id!r} is a {type(incident_id).__name__}; "
            "pass the string returned by CreateIncident()"
        )
    try:
        return str(uuid.UUID(incident_id))
    except ValueError:
        raise MessageError(
            f"{where}: IncidentID {incident_id!r} is not a UUID; "
            "pass the string returned by CreateIncident()"
        ) from None


def _text_fault(text: str, subject: str) -> str | None:
    """Text the database or the wire cannot carry: NUL, or a lone surrogate (not UTF-8)."""
    if "\x00" in text:
        return f"{subject} {NUL_FAULT}"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return (f"{subject} contains a lone surrogate ({text!r:.40}), which is not valid "
                "Unicode; decode the source text properly")
    return None


def _json_fault(value: Any, path: str, depth: int = 0) -> str | None:
    """Describe the first part of `value` that would not survive a JSON round trip."""
    if isinstance(value, str):
        return _text_fault(value, path)
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return None if value.bit_length() <= MAX_INT_BITS else (
            f"{path} is an integer of {value.bit_length():,} bits, too large for JSON; "
            "send it as a string")
    if depth > MAX_DEPTH:
        return f"{path} is nested deeper than {MAX_DEPTH} levels; flatten it"
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{path} is {value!r}, which JSON cannot hold"
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return (f"{path} has the key {key!r} ({type(key).__name__}); "
                        "JSON object keys must be strings")
            fault = _text_fault(key, f"{path} has a key that")
            if fault:
                return fault
            fault = _json_fault(item, f"{path}[{key!r}]", depth + 1)
            if fault:
                return fault
        return None
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            fault = _json_fault(item, f"{path}[{index}]", depth + 1)
            if fault:
                return fault
        return None
    return (f"{path} is a {type(value).__name__} ({value!r:.80}), which is not JSON; "
            "convert it to a str, number, bool, None, list or dict")


def to_json(value: Any, *, where: str, name: str) -> str:
    """Serialise `value` to JSON text, or raise MessageError naming the offending key."""
    fault = _json_fault(value, name)
    if fault:
        raise MessageError(f"{where}: {fault}")
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


def check_text(value: Any, *, where: str, name: str, max_length: int,
               empty_ok: bool = True) -> str:
    """Return `value` if it is a string the database can store, else raise a clear error."""
    if not isinstance(value, str):
        raise MessageTypeError(f"{where}: {name} {value!r:.80} must be a string")
    if not value.strip() and not empty_ok:
        raise MessageTypeError(f"{where}: {name} {value!r} must be a non-empty string")
    if len(value) > max_length:
        raise MessageError(f"{where}: {name} is {len(value)} characters, over the limit of "
                           f"{max_length}; shorten it")
    fault = _text_fault(value, name)
    if fault:
        raise MessageError(f"{where}: {fault}")
    return value


def check_seconds(value: Any, *, where: str, name: str) -> float:
    """A finite, non-negative number of seconds (bool is not a number here)."""
    try:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError
        seconds = float(value)
    except (TypeError, OverflowError):
        seconds = float("nan")
    if not math.isfinite(seconds) or seconds < 0:
        raise MessageError(f"{where}: {name} {value!r:.40} must be a finite number of seconds >= 0")
    return seconds


_CORNER = re.compile(r"\s*([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*[/,]\s*"
                     r"([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*")


def parse_corner(text: str) -> tuple[float, float] | None:
    """The two numbers of an area corner "a/b" (or "a,b"); None if it is not one."""
    match = _CORNER.fullmatch(text)
    if not match:
        return None
    a, b = float(match.group(1)), float(match.group(2))
    return (a, b) if abs(a) <= 180 and abs(b) <= 180 else None


def check_area(upper_left: Any, lower_right: Any, *, where: str) -> tuple[str, str]:
    """Both corners of an area as "latitude/longitude" text, or both empty."""
    for name, corner in (("upper_left_latlong", upper_left), ("lower_right_latlong", lower_right)):
        check_text(corner, where=where, name=name, max_length=100)
        if corner.strip() and parse_corner(corner) is None:
            raise MessageError(f"{where}: {name} {corner!r} is not a corner; give two numbers "
                               "between -180 and 180 as 'latitude/longitude', e.g. '38.6/-120.5'")
    if bool(upper_left.strip()) != bool(lower_right.strip()):
        raise MessageError(f"{where}: give both corners of the area (upper_left_latlong and "
                           "lower_right_latlong) or neither")
    return upper_left.strip(), lower_right.strip()
