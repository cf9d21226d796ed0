"""Small incident look-ups shared by the API functions."""
from __future__ import annotations

from incidents.exceptions import UnknownIncident
from incidents.models import Incident


def status_of(incident_id: str) -> str | None:
    return Incident.objects.filter(pk=incident_id).values_list("status", flat=True).first()


def require(incident_id: str, *, where: str) -> str:
    """Return the incident's status, or raise UnknownIncident."""
    status = status_of(incident_id)
    if status is None:
        raise UnknownIncident(
            f"{where}: no incident has IncidentID {incident_id!r}; create it with "
            "CreateIncident() and use the id it returns",
            incident_id=incident_id,
        )
    return status
