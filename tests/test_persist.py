"""Persist.Put / Persist.Get."""
from __future__ import annotations

import uuid

import pytest

from incidents import workflow
from incidents.exceptions import MessageError, UnknownIncident
from incidents.models import HandlerState

pytestmark = pytest.mark.usefixtures("broker")


@workflow.handler
def keeper(message):
    incident_id = message["IncidentID"]
    workflow.Persist.Put(incident_id, {"n": message["n"]})
    message["mine"] = workflow.Persist.Get(incident_id)
    message["all"] = workflow.Persist.Get(incident_id, ignoreOriginator=True)
    if message.get("fail"):
        raise RuntimeError("no commit")


@workflow.handler
def other(message):
    workflow.Persist.Put(message["IncidentID"], "other's")


def test_get_returns_this_handlers_puts_in_order_including_this_runs(incident_id):
    keeper({"IncidentID": incident_id, "n": 1})
    other({"IncidentID": incident_id})
    message = {"IncidentID": incident_id, "n": 2}
    keeper(message)
    assert message["mine"] == [{"n": 1}, {"n": 2}]
    assert message["all"] == [{"n": 1}, "other's", {"n": 2}]
    assert list(HandlerState.objects.values_list("handler", flat=True)) == [
        "keeper", "other", "keeper"]


def test_puts_of_a_failing_run_are_discarded(incident_id):
    with pytest.raises(RuntimeError):
        keeper({"IncidentID": incident_id, "n": 1, "fail": True})
    assert not HandlerState.objects.exists()


def test_outside_a_handler_put_is_stored_at_once_under_no_handler(incident_id):
    workflow.Persist.Put(incident_id, [1, 2])
    assert workflow.Persist.Get(incident_id) == [[1, 2]]
    assert HandlerState.objects.get().handler == ""


def test_put_refuses_non_json_and_unknown_incidents(incident_id):
    with pytest.raises(MessageError, match=r"data\['f'\] is a builtin_function_or_method"):
        workflow.Persist.Put(incident_id, {"f": print})
    with pytest.raises(UnknownIncident):
        workflow.Persist.Put(str(uuid.uuid4()), {})
    with pytest.raises(UnknownIncident):
        workflow.Persist.Get(str(uuid.uuid4()))
    assert not HandlerState.objects.exists()


@workflow.handler
def sibling(message):
    incident_id = message["IncidentID"]
    workflow.Persist.Put(incident_id, message["node"], key=message["parent"])
    message["siblings"] = workflow.Persist.Get(incident_id, key=message["parent"])


def test_get_with_a_key_returns_only_the_puts_filed_under_it_including_this_runs(incident_id):
    for node, parent in (("aL", "a"), ("bL", "b"), ("aR", "a")):
        sibling({"IncidentID": incident_id, "node": node, "parent": parent})
    message = {"IncidentID": incident_id, "node": "aM", "parent": "a"}
    sibling(message)
    assert message["siblings"] == ["aL", "aR", "aM"]
    assert workflow.Persist.Get(incident_id, ignoreOriginator=True, key="b") == ["bL"]
    assert workflow.Persist.Get(incident_id, ignoreOriginator=True) == ["aL", "bL", "aR", "aM"]


def test_a_key_must_be_a_short_string(incident_id):
    with pytest.raises(MessageError, match="key is 201 characters"):
        workflow.Persist.Put(incident_id, 1, key="k" * 201)
    with pytest.raises(TypeError, match="key 7 must be a string"):
        workflow.Persist.Get(incident_id, key=7)
    assert not HandlerState.objects.exists()
