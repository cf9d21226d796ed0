"""Small incident look-ups shared by the API functions."""
from __future__ import annotations

from typing import Any

from incidents.engine.validation import check_incident_id
from incidents.exceptions import UnknownIncident
from incidents.models import Incident


def status_of(incident_id: str) -> str | None:
    return Incident.objects.filter(pk=incident_id).values_list("status", flat=True).first()


def _unknown(incident_id: str, where: str) -> UnknownIncident:
    return UnknownIncident(f"{where}: no incident has IncidentID {incident_id!r}; create it "
                           "with CreateIncident() and use the id it returns",
                           incident_id=incident_id)


def get(incident_id: Any, *, where: str) -> Incident:
    """The incident with this id, or a clear bad-id / UnknownIncident error."""
    incident_id = check_incident_id(incident_id, where=where)
    incident = Incident.objects.filter(pk=incident_id).first()
    if incident is None:
        raise _unknown(incident_id, where)
    return incident


def require(incident_id: str, *, where: str) -> str:
    """Return the incident's status, or raise UnknownIncident."""
    status = status_of(incident_id)
    if status is None:
        raise _unknown(incident_id, where)
    return status
