"""Helpers shared by the incident management commands."""
from __future__ import annotations

import getpass
import json
from typing import Any

from django.core.management.base import CommandError


def json_object(text: str | None, option: str) -> dict[str, Any] | None:
    """Parse an option's JSON object, or raise CommandError saying what to fix."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, huge numbers, deep nesting
        raise CommandError(f"{option}: not valid JSON ({exc}); give an object such as "
                           '\'{"size": 1000}\'') from None
    if not isinstance(value, dict):
        raise CommandError(f"{option}: {text!r} is JSON but not an object; wrap it in {{...}}")
    return value


def operator() -> str:
    """Who runs the command, recorded as who ended an incident."""
    try:
        return f"{getpass.getuser()} (command line)"
    except Exception:  # no user name in this environment
        return "command line"
