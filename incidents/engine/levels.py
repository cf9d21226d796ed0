"""Incident priority levels as people write them: a name in any case, or its number."""
from __future__ import annotations

from typing import Any

from incidents.exceptions import MessageError
from incidents.models import IncidentPriority

LEVELS = ", ".join(f"{level.label} ({level.value})" for level in IncidentPriority)


def parse_level(level: Any, *, where: str) -> int:
    """A priority level from its name (any case) or number: 'urgent', 'URGENT', 3 or '3' -> 3;
    anything else -> MessageError naming the levels.

        parse_level("High", where="CreateIncident()")  # -> 2
    """
    if isinstance(level, str):
        text = level.strip().lower()
        for choice in IncidentPriority:
            if text in (choice.label, str(choice.value)):
                return int(choice.value)
    elif isinstance(level, int) and not isinstance(level, bool) and level in IncidentPriority.values:
        return int(level)
    raise MessageError(f"{where}: priority {level!r:.40} is not a level; use one of {LEVELS} "
                       "(a name or its number)")
