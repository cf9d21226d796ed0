"""Small incident look-ups shared by the API functions and the management commands."""
from __future__ import annotations

import re
import uuid
from typing import Any

from incidents.engine.validation import check_incident_id
from incidents.exceptions import MessageError, UnknownIncident
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


#: The start of an IncidentID as printed (lower-case hex and hyphens), at least the 8
#: characters the wildfire map shows.
ID_PREFIX = re.compile(r"[0-9a-f]{8}[0-9a-f-]{0,27}")
_LIST_HINT = "see `manage.py list_incidents` for the ids"


def resolve(text: str, *, where: str) -> str:
    """The full IncidentID an operator means by `text`: an id, or a unique prefix of at
    least 8 of its characters. For the command line: its errors give command-line advice.

        resolve("3f2a9c1e", where="cancel")  # -> "3f2a9c1e-...-..."
    """
    text = text.strip().lower()
    try:
        incident_id = str(uuid.UUID(text))
    except ValueError:
        incident_id = ""
    if incident_id:
        if not Incident.objects.filter(pk=incident_id).exists():
            raise UnknownIncident(f"{where}: no incident has IncidentID {incident_id!r}; "
                                  f"{_LIST_HINT}", incident_id=incident_id)
        return incident_id
    if not ID_PREFIX.fullmatch(text):
        raise MessageError(f"{where}: IncidentID {text!r} is not a UUID, nor its first 8 or "
                           f"more characters; {_LIST_HINT}")
    matches = [str(pk) for pk in
               Incident.objects.filter(pk__startswith=text).order_by("pk")
               .values_list("pk", flat=True)[:6]]
    if not matches:
        raise UnknownIncident(f"{where}: no incident's id starts with {text!r}; {_LIST_HINT}")
    if len(matches) > 1:
        more = ", ..." if len(matches) > 5 else ""
        raise UnknownIncident(f"{where}: {text!r} starts the ids of several incidents "
                              f"({', '.join(matches[:5])}{more}); give more characters")
    return matches[0]
