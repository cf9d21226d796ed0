"""Persisted handler state: Persist.Put stages JSON data, Persist.Get reads it back in order."""
from __future__ import annotations

import json
from typing import Any

from incidents.engine import context, incidents_db
from incidents.engine.validation import check_incident_id, check_text, to_json
from incidents.models import HandlerState


def put(incident_id: Any, data: Any, key: Any = "") -> None:
    incident_id = check_incident_id(incident_id, where="Persist.Put()")
    key = check_text(key, where="Persist.Put()", name="key", max_length=200)
    # Store what a JSON round trip gives back, so Get() returns the same before and after commit.
    stored = json.loads(to_json(data, where="Persist.Put()", name="data"))
    run = context.current_run.get()
    if run is not None:
        if incident_id != run.incident_id:
            incidents_db.require(incident_id, where="Persist.Put()")
        run.puts.append((incident_id, key, stored))
        return
    incidents_db.require(incident_id, where="Persist.Put()")
    HandlerState.objects.create(incident_id=incident_id, handler="", key=key, data=stored)


def get(incident_id: Any, ignore_originator: bool = False, key: Any = None) -> list[Any]:
    incident_id = check_incident_id(incident_id, where="Persist.Get()")
    if key is not None:
        key = check_text(key, where="Persist.Get()", name="key", max_length=200)
    run = context.current_run.get()
    if run is None or incident_id != run.incident_id:
        incidents_db.require(incident_id, where="Persist.Get()")
    handler = run.originator if run is not None else ""
    rows = HandlerState.objects.filter(incident_id=incident_id)
    if not ignore_originator:
        rows = rows.filter(handler=handler)
    if key is not None:
        rows = rows.filter(key=key)
    values = list(rows.order_by("id").values_list("data", flat=True))
    if run is not None:
        values.extend(data for staged_id, staged_key, data in run.puts
                      if staged_id == incident_id and key in (None, staged_key))
    return values
