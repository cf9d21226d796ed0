"""Persist.Put / Persist.Get."""
from __future__ import annotations

import threading
import uuid

import pytest
from django.db import connection

from incidents import workflow
from incidents.engine import dispatch, locks
from incidents.exceptions import Deferred, MessageError, UnknownIncident
from incidents.models import HandlerState, Lock, MessageLog, MessageStatus
from incidents.testing import run_until_idle
from workflows import quicksort

from .conftest import wait_until

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


def test_the_originals_incident_keyword_works_for_put_and_get(incident_id):
    @workflow.handler
    def keyword_user(message):
        workflow.Persist.Put(incident=message["IncidentID"], data={"Called": True})
        message["got"] = workflow.Persist.Get(incident=message["IncidentID"])

    message = {"IncidentID": incident_id}
    keyword_user(message)
    assert message["got"] == [{"Called": True}]
    with pytest.raises(TypeError, match="give the incident id once"):
        workflow.Persist.Put(incident_id, 1, incident=incident_id)
    with pytest.raises(TypeError, match="give the incident id once"):
        workflow.Persist.Get()


# --- fan-in without @atomic: the persist lock ------------------------------------------------

@workflow.handler
def fan_in(message):
    """The original's pattern: Put my part, Get all parts (optionally pausing in between)."""
    workflow.Persist.Put(message["IncidentID"], message["part"])
    message["seen"] = workflow.Persist.Get(message["IncidentID"])
    if "hold" in message:
        message["hold"].wait(30)  # still running: nothing of this run is committed yet


FAN_IN_QUEUE = "persist_fan_in"
workflow.RegisterHandler(fan_in, FAN_IN_QUEUE)


def waits_for_persist_lock(monkeypatch) -> threading.Event:
    """An event set when some run starts waiting for a persist lock."""
    waiting = threading.Event()
    real = locks.take_waiting

    def watched(label, *args, **kwargs):
        if label.startswith("_persist:") and locks.backend().is_locked(label, args[0]):
            waiting.set()
        return real(label, *args, **kwargs)

    monkeypatch.setattr(locks, "take_waiting", watched)
    return waiting


def in_thread(function, *args):
    def run():
        try:
            function(*args)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_a_siblings_put_waits_for_the_first_to_commit_so_the_last_sees_every_part(
        transactional_db, monkeypatch):
    incident_id = workflow.CreateIncident(name="fan in", kind="TEST")
    waiting = waits_for_persist_lock(monkeypatch)
    first = {"IncidentID": incident_id, "part": "a", "hold": threading.Event()}
    second = {"IncidentID": incident_id, "part": "b"}
    one = in_thread(fan_in, first)
    assert wait_until(lambda: Lock.objects.filter(label="_persist:fan_in").exists())
    two = in_thread(fan_in, second)
    assert waiting.wait(30), "the second Put did not wait for the first run's commit"
    first["hold"].set()
    one.join(30)
    two.join(30)
    assert first["seen"] == ["a"]
    assert second["seen"] == ["a", "b"]  # the last sibling sees both parts: it alone goes on
    assert not Lock.objects.exists()


def test_handlers_that_never_put_take_no_persist_lock(incident_id, monkeypatch):
    monkeypatch.setattr(locks, "take_waiting", lambda *a, **k: pytest.fail("took a lock"))

    @workflow.handler
    def reader(message):
        message["got"] = workflow.Persist.Get(message["IncidentID"])
        workflow.send(message={"IncidentID": message["IncidentID"]}, queue=FAN_IN_QUEUE)

    message = {"IncidentID": incident_id}
    reader(message)
    assert message["got"] == []


def test_an_atomic_handlers_own_puts_take_no_second_lock(incident_id, monkeypatch):
    taken = []
    real = locks.take_waiting
    monkeypatch.setattr(locks, "take_waiting",
                        lambda label, *a, **k: taken.append(label) or real(label, *a, **k))
    quicksort.start(incident_id, [3, 1, 2, 5, 4])
    workflow.FlushMessages()
    run_until_idle()
    assert quicksort.sorted_result(incident_id) == [1, 2, 3, 4, 5]
    assert "_atomic:merge_handler" in taken and "_persist:merge_handler" not in taken


def test_a_put_that_waits_too_long_drops_the_run_and_its_message_is_retried(
        incident_id, settings):
    settings.WORKFLOW_PERSIST_WAIT_SECONDS = 0.05
    message = {"IncidentID": incident_id, "part": "late"}
    workflow.send(message=message, queue=FAN_IN_QUEUE)
    workflow.FlushMessages()
    assert locks.backend().acquire("_persist:fan_in", incident_id, "a sibling", 60)
    with pytest.raises(Deferred, match=r"waited 0\.05 s for the persist lock"):
        dispatch.deliver(FAN_IN_QUEUE, message)
    assert not HandlerState.objects.exists()
    # The claim is given back, so the retried copy is handled, not dropped as a duplicate.
    assert MessageLog.objects.get(pk=message["MessageID"]).status == MessageStatus.SENT
    locks.backend().release("_persist:fan_in", incident_id, "a sibling")
    assert dispatch.deliver(FAN_IN_QUEUE, message).result is dispatch.Result.COMPLETE
    assert workflow.Persist.Get(incident_id, ignoreOriginator=True) == ["late"]


def test_a_rerun_of_a_message_whose_run_died_inherits_that_runs_persist_lock(incident_id):
    message = {"IncidentID": incident_id, "part": "again"}
    workflow.send(message=message, queue=FAN_IN_QUEUE)
    workflow.FlushMessages()
    MessageLog.objects.filter(pk=message["MessageID"]).update(
        status=MessageStatus.PROCESSING, attempts=1)  # its run died holding the lock
    assert locks.backend().acquire("_persist:fan_in", incident_id,
                                   f"{message['MessageID']}:dead", 60)
    outcome = dispatch.deliver(FAN_IN_QUEUE, message, redelivered=True)
    assert outcome.result is dispatch.Result.COMPLETE
    assert workflow.Persist.Get(incident_id, ignoreOriginator=True) == ["again"]
    assert not Lock.objects.exists()


def test_a_redelivered_copy_of_a_handled_message_frees_the_persist_lock_its_run_left(
        incident_id):
    message = {"IncidentID": incident_id, "part": "done"}
    workflow.send(message=message, queue=FAN_IN_QUEUE)
    workflow.FlushMessages()
    assert dispatch.deliver(FAN_IN_QUEUE, message).result is dispatch.Result.COMPLETE
    # Its run committed, then died before giving the lock back.
    assert locks.backend().acquire("_persist:fan_in", incident_id,
                                   f"{message['MessageID']}:dead", 60)
    outcome = dispatch.deliver(FAN_IN_QUEUE, message, redelivered=True)
    assert outcome.result is dispatch.Result.DUPLICATE
    assert not Lock.objects.exists()


@pytest.mark.stacks
def test_get_returns_the_types_put_stored_on_every_stack(incident_id):
    values = [1e16, 1e300, 2.5, -0.0, 10**20, 7, True, None, "1e16", [1.0, {"f": 3e20}]]
    for value in values:
        workflow.Persist.Put(incident_id, value)
    got = workflow.Persist.Get(incident_id)
    assert got == values
    assert [type(v) for v in got] == [type(v) for v in values]  # 1e16 is no int on PostgreSQL
    assert type(got[-1][1]["f"]) is float
