"""What operators did to incidents, recorded with who, when and why (OperatorAction)."""
from __future__ import annotations

from typing import Any

from incidents.models import OperatorAction


def record(incident_id: str, action: str, *, by: str, reason: str = "", **details: Any) -> None:
    """Record an operator's action; call it in the transaction that does the action, so that
    the record exists exactly when the action happened."""
    OperatorAction.objects.create(incident_id=incident_id, action=action,
                                  by=by or "unknown operator", reason=reason, details=details)


def history(incident_id: str) -> list[OperatorAction]:
    """The incident's recorded actions, newest first."""
    return list(OperatorAction.objects.filter(incident_id=incident_id).order_by("-at", "-id"))
