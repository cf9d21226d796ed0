"""@handler, @atomic, RegisterHandler, and what a handler run commits or discards."""
from __future__ import annotations

import pytest

from incidents import workflow
from incidents.engine import registry
from incidents.exceptions import HandlerRegistrationError, QueueNameError
from incidents.models import Incident, IncidentStatus, MessageLog, MessageStatus
from incidents.testing import HandlerFailed, queued_count, run_until_idle

pytestmark = pytest.mark.usefixtures("broker")


@workflow.handler
def forwarder(message):
    workflow.send(message={"IncidentID": message["IncidentID"]}, queue="A_queue")
    workflow.Persist.Put(message["IncidentID"], {"seen": True})
    if message.get("fail"):
        raise RuntimeError("boom")


@workflow.handler
def early_flusher(message):
    workflow.send(message={"IncidentID": message["IncidentID"]}, queue="A_queue")
    workflow.FlushMessages()
    message["during"] = queued_count("A_queue")
    workflow.send(message={"IncidentID": message["IncidentID"]}, queue="B_queue")


def test_a_handler_called_directly_sends_its_messages_when_it_returns(incident_id):
    forwarder({"IncidentID": incident_id})
    row = MessageLog.objects.get()
    assert (row.destination, row.status, row.originator) == ("A_queue", "SENT", "forwarder")
    assert queued_count("A_queue") == 1
    assert workflow.Persist.Get(incident_id, ignoreOriginator=True) == [{"seen": True}]


def test_a_handler_that_raises_sends_and_stores_nothing(incident_id):
    with pytest.raises(RuntimeError, match="boom"):
        forwarder({"IncidentID": incident_id, "fail": True})
    assert not MessageLog.objects.filter(destination="A_queue").exists()
    assert queued_count("A_queue") == 0
    assert workflow.Persist.Get(incident_id, ignoreOriginator=True) == []


def test_flush_inside_a_handler_sends_what_is_queued_so_far_at_once(incident_id):
    message = {"IncidentID": incident_id}
    early_flusher(message)
    assert message["during"] == 1
    assert queued_count("A_queue") == 1 and queued_count("B_queue") == 1


def test_a_failing_handler_logs_error_with_traceback_and_fails_the_incident(incident_id):
    workflow.send(message={"IncidentID": incident_id}, queue="probe_fail")
    workflow.FlushMessages()
    with pytest.raises(HandlerFailed, match="probe failure"):
        run_until_idle()
    run_until_idle()  # the cleanup request
    failed = MessageLog.objects.get(destination="probe_fail")
    assert failed.status == MessageStatus.ERROR
    assert "RuntimeError: probe failure" in failed.comment and "Traceback" in failed.comment
    assert not MessageLog.objects.filter(destination="probe_chain").exists()
    incident = Incident.objects.get(pk=incident_id)
    assert incident.status == IncidentStatus.ERROR
    assert "fail_handler failed" in incident.comment and incident.completed_at
    assert incident.cleaned_at is not None


def test_registering_an_undecorated_function_is_refused():
    def plain(message):
        pass

    with pytest.raises(HandlerRegistrationError, match=r"decorate it with @workflow\.handler"):
        workflow.RegisterHandler(plain, "plain_queue")


def test_rebinding_a_queue_to_another_handler_is_refused():
    with pytest.raises(HandlerRegistrationError, match="already bound to handler 'A_handler'"):
        workflow.RegisterHandler(forwarder, "A_queue")


def test_registering_the_same_handler_again_is_harmless():
    from workflows import simple

    workflow.RegisterHandler(simple.A_handler, "A_queue")
    assert registry.handler_for("A_queue").name == "A_handler"


def test_reserved_queue_names_are_refused():
    with pytest.raises(QueueNameError, match="reserved"):
        workflow.RegisterHandler(forwarder, "_mine")


def test_two_modules_may_each_have_a_handler_of_one_name_and_keep_their_own_queue():
    def make():
        @workflow.handler
        def forwarder(message):
            pass

        return forwarder

    twin = make()
    workflow.RegisterHandler(forwarder, "forward_one")
    workflow.RegisterHandler(twin, "forward_two")

    assert registry.handler_for("forward_one").func is registry.spec_of(forwarder).func
    assert registry.handler_for("forward_two").func is registry.spec_of(twin).func
    assert registry.handler_for("forward_two").name == "forwarder"  # originator, Persist, graph
    with pytest.raises(HandlerRegistrationError, match="already bound to handler 'forwarder'"):
        workflow.RegisterHandler(twin, "forward_one")


def test_atomic_works_above_and_below_handler():
    @workflow.atomic
    @workflow.handler
    def above(message):
        pass

    @workflow.handler
    @workflow.atomic
    def below(message):
        pass

    assert registry.spec_of(above).atomic and registry.spec_of(below).atomic
    assert not registry.spec_of(forwarder).atomic


def test_a_handler_called_from_a_handler_is_part_of_its_run(incident_id):
    @workflow.handler
    def outer(message):
        forwarder(message)  # its sends join this run
        raise RuntimeError("outer fails")

    with pytest.raises(RuntimeError, match="outer fails"):
        outer({"IncidentID": incident_id})
    assert queued_count("A_queue") == 0
    assert workflow.Persist.Get(incident_id, ignoreOriginator=True) == []


def test_a_failing_direct_call_leaves_the_incident_alone(incident_id):
    with pytest.raises(RuntimeError):
        forwarder({"IncidentID": incident_id, "fail": True})
    assert Incident.objects.get(pk=incident_id).status == IncidentStatus.PENDING
    assert not MessageLog.objects.exists()


@pytest.mark.parametrize("limit", [0, -1, "5", True])
def test_a_bad_time_limit_is_refused(limit):
    with pytest.raises(HandlerRegistrationError, match="time_limit"):
        workflow.RegisterHandler(forwarder, "timed_queue", time_limit=limit)
