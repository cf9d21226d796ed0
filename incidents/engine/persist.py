"""Persisted handler state: Persist.Put stages JSON data, Persist.Get reads it back in order.

A handler's Puts commit with its other effects, when it returns. The original committed
each Put at once, so its plain handlers fan in with "Put my part, Get all parts, go on if
they are all there". To keep that pattern working, a run's first Put takes the persist lock
of (incident, handler) and holds it until the run has committed: siblings' Put+Get
sequences run one after the other, so the last one sees every part, and only it goes on.
An @atomic handler's runs are one at a time already, so its Puts to its own incident take
no second lock; handlers that never Put take none at all.
"""
from __future__ import annotations

import json
from typing import Any

from incidents import conf
from incidents.engine import context, incidents_db, locks
from incidents.engine.validation import check_incident_id, check_text, to_json
from incidents.exceptions import Deferred
from incidents.models import HandlerState


def put(incident_id: Any, data: Any, key: Any = "") -> None:
    incident_id = check_incident_id(incident_id, where="Persist.Put()")
    key = check_text(key, where="Persist.Put()", name="key", max_length=200)
    text = to_json(data, where="Persist.Put()", name="data")
    run = context.current_run.get()
    if run is not None:
        if incident_id != run.incident_id:
            incidents_db.require(incident_id, where="Persist.Put()")
        _hold_persist_lock(run, incident_id)
        # Get() returns what a JSON round trip gives back, before the commit as after it.
        run.puts.append((incident_id, key, json.loads(text), text))
        return
    incidents_db.require(incident_id, where="Persist.Put()")
    HandlerState.objects.create(incident_id=incident_id, handler="", key=key, data=text)


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
    values = [None if text is None else json.loads(text)
              for text in rows.order_by("id").values_list("data", flat=True)]
    if run is not None:
        values.extend(data for staged_id, staged_key, data, _ in run.puts
                      if staged_id == incident_id and key in (None, staged_key))
    return values


def insert_staged(run: context.HandlerRun) -> None:
    """Insert the run's Puts, inside its commit."""
    if run.puts:
        HandlerState.objects.bulk_create(
            HandlerState(incident_id=incident_id, handler=run.originator, key=key, data=text)
            for incident_id, key, _, text in run.puts)


def _hold_persist_lock(run: context.HandlerRun, incident_id: str) -> None:
    label = f"_persist:{run.originator}"
    if (label, incident_id) in run.locks or (f"_atomic:{run.originator}", incident_id) in run.locks:
        return
    # A rerun of a message whose earlier run died inherits that run's lock (it cannot commit).
    heir_of = f"{run.message_id}:" if run.message_id else ""
    wait = float(conf.get("PERSIST_WAIT_SECONDS"))
    if not locks.take_waiting(label, incident_id, run.lock_owner, wait, heir_of):
        raise Deferred(f"Persist.Put(): {run.originator} waited {wait:g} s for the persist lock "
                       f"of incident {incident_id}, held by a sibling run that has not "
                       "committed; this run is dropped and its message retried",
                       delay=locks.retry_delay(2), incident_id=incident_id,
                       handler=run.originator)
    run.locks.add((label, incident_id))
