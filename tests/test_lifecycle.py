"""CreateIncident, setIncidentActive, Complete, Cancel and the cleanup they request."""
from __future__ import annotations

import datetime as dt
import time
import uuid

import pytest

from incidents import workflow
from incidents.engine import dispatch, locks
from incidents.engine.dispatch import Result
from incidents.engine.registry import CLEANUP_QUEUE
from incidents.exceptions import Deferred, MessageError, MessageTypeError, UnknownIncident
from incidents.models import HandlerState, Incident, IncidentStatus, Lock, MessageLog, MessageStatus
from incidents.testing import queued_count, run_until_idle

pytestmark = pytest.mark.usefixtures("broker")


def test_create_incident_returns_a_uuid_of_a_pending_incident(transactional_db):
    incident_id = workflow.CreateIncident(name="Ridge fire", kind="WILDFIRE",
                                          incident_date="2026-08-01T14:00:00+00:00",
                                          parameters={"bbox": [1, 2, 3, 4]})
    incident = Incident.objects.get(pk=uuid.UUID(incident_id))
    assert (incident.name, incident.kind, incident.status) == ("Ridge fire", "WILDFIRE", "PENDING")
    assert incident.incident_date == dt.datetime(2026, 8, 1, 14, tzinfo=dt.UTC)
    assert incident.parameters == {"bbox": [1, 2, 3, 4]}


def test_create_incident_takes_the_originals_arguments_positionally(transactional_db):
    class PonyUser:  # the original passed its database's user record
        username = "alice"

    incident_id = workflow.CreateIncident("wildfire", "WILDFIRE", None, PonyUser(),
                                          "53.38/1.83", "48.76,11.74", 1)
    incident = Incident.objects.get(pk=incident_id)
    assert (incident.owner, incident.upper_left_latlong, incident.lower_right_latlong,
            incident.duration, incident.parameters) == (
        "alice", "53.38/1.83", "48.76,11.74", 1.0, {})
    bare = Incident.objects.get(pk=workflow.CreateIncident("quicksort", "QUICKSORT"))
    assert (bare.owner, bare.upper_left_latlong, bare.duration) == ("", "", None)
    assert Incident.objects.get(pk=workflow.CreateIncident("n", "K", user_id=7)).owner == "7"


@pytest.mark.parametrize(
    ("kwargs", "error", "says"),
    [
        ({"name": "", "kind": "K"}, MessageTypeError, "name '' must be a non-empty string"),
        ({"name": "n", "kind": None}, MessageTypeError, "kind None"),
        ({"name": "n", "kind": "K", "incident_date": "yesterday"}, MessageError, "ISO 8601"),
        ({"name": "n", "kind": "K", "incident_date": 5}, MessageTypeError, "datetime"),
        ({"name": "n", "kind": "K", "parameters": [1]}, MessageTypeError, "must be a dict"),
        ({"name": "n", "kind": "K", "parameters": {"d": dt.date.today()}}, MessageError,
         r"parameters\['d'\] is a date"),
        ({"name": "n" * 201, "kind": "K"}, MessageError, "over the limit of 200"),
        ({"name": "a\x00b", "kind": "K"}, MessageError, "NUL character"),
        ({"name": "n", "kind": "K", "upper_left_latlong": "38.6/-120.5"}, MessageError,
         "both corners"),
        ({"name": "n", "kind": "K", "upper_left_latlong": "north", "lower_right_latlong": "1/2"},
         MessageError, "'north' is not a corner"),
        ({"name": "n", "kind": "K", "upper_left_latlong": "1/2", "lower_right_latlong": "1/200"},
         MessageError, "between -180 and 180"),
        ({"name": "n", "kind": "K", "duration": "soon"}, MessageError, "duration 'soon'"),
        ({"name": "n", "kind": "K", "duration": -1}, MessageError, "must be a number >= 0"),
        ({"name": "n", "kind": "K", "user_id": ["alice"]}, MessageTypeError, "user_id"),
    ],
)
def test_bad_create_incident_arguments_are_refused_and_nothing_is_stored(
    transactional_db, kwargs, error, says
):
    with pytest.raises(error, match=says):
        workflow.CreateIncident(**kwargs)
    assert not Incident.objects.exists()


def test_set_incident_active_moves_pending_to_active_once(incident_id):
    assert workflow.setIncidentActive(incident_id) is True
    assert workflow.setIncidentActive(incident_id) is False
    assert Incident.objects.get(pk=incident_id).status == IncidentStatus.ACTIVE


def test_set_incident_active_refuses_an_unknown_incident(transactional_db):
    with pytest.raises(UnknownIncident):
        workflow.setIncidentActive(str(uuid.uuid4()))


def test_complete_outside_a_handler_sets_status_and_waits_for_flush_to_request_cleanup(incident_id):
    workflow.Complete(incident_id)
    incident = Incident.objects.get(pk=incident_id)
    assert incident.status == IncidentStatus.COMPLETE and incident.completed_at
    assert queued_count(CLEANUP_QUEUE) == 0
    workflow.FlushMessages()
    assert queued_count(CLEANUP_QUEUE) == 1
    run_until_idle()
    assert Incident.objects.get(pk=incident_id).cleaned_at is not None


def test_complete_inside_a_handler_applies_when_the_handler_returns(incident_id):
    @workflow.handler
    def finisher(message):
        workflow.Complete(message["IncidentID"])
        assert Incident.objects.get(pk=incident_id).status == IncidentStatus.PENDING

    finisher({"IncidentID": incident_id})
    assert Incident.objects.get(pk=incident_id).status == IncidentStatus.COMPLETE
    assert MessageLog.objects.filter(destination=CLEANUP_QUEUE, originator="finisher").exists()


def test_cancel_records_the_reason_and_the_status_given(incident_id):
    workflow.Cancel(incident_id, reason="sensor fault", status="ERROR")
    incident = Incident.objects.get(pk=incident_id)
    assert (incident.status, incident.comment) == (IncidentStatus.ERROR, "sensor fault")


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [({"status": "DONE"}, "not an end state"), ({"reason": 5}, "reason 5 must be a string"),
     ({"force": "yes"}, "force='yes' must be True or False")],
)
def test_bad_cancel_arguments_are_refused(incident_id, kwargs, says):
    with pytest.raises((MessageError, MessageTypeError), match=says):
        workflow.Cancel(incident_id, **kwargs)
    workflow.FlushMessages()
    assert Incident.objects.get(pk=incident_id).status == IncidentStatus.PENDING
    assert queued_count(CLEANUP_QUEUE) == 0


def test_ending_an_ended_incident_again_changes_nothing(incident_id):
    workflow.Complete(incident_id)
    workflow.Cancel(incident_id, reason="late")
    workflow.FlushMessages()
    assert Incident.objects.get(pk=incident_id).status == IncidentStatus.COMPLETE
    assert MessageLog.objects.filter(destination=CLEANUP_QUEUE).count() == 1


def leave_state(incident_id):
    workflow.Persist.Put(incident_id, {"x": 1})
    assert locks.backend().acquire("label", incident_id, "holder", 60)
    workflow.send(message={"IncidentID": incident_id}, queue="probe_chain", dest_tag="t")
    workflow.FlushMessages()
    MessageLog.objects.filter(destination="probe_chain").update(status=MessageStatus.COMPLETE)


@pytest.mark.parametrize(
    ("flags", "left"),
    [({}, (0, 0, 1)), ({"CleanLocks": False}, (0, 1, 1)), ({"CleanPersist": False}, (1, 0, 1)),
     ({"CleanMessages": True}, (0, 0, 0))],
)
def test_cleanup_removes_what_the_flags_say(incident_id, flags, left):
    leave_state(incident_id)
    workflow.Complete(incident_id, **flags)
    workflow.FlushMessages()
    run_until_idle()
    remaining = (HandlerState.objects.count(), Lock.objects.count(),
                 MessageLog.objects.filter(destination="probe_chain").count())
    assert remaining == left


@pytest.mark.parametrize("end", [workflow.Complete, workflow.Cancel])
def test_the_incident_scratch_directory_lives_until_cleanup(incident_id, end):
    scratch = workflow.IncidentDir(incident_id)
    assert scratch.is_dir() and scratch.name == incident_id
    (scratch / "hotspots.csv").write_text("latitude,longitude\n")
    assert workflow.IncidentDir(incident_id) == scratch  # the same one, kept
    end(incident_id)
    workflow.FlushMessages()
    assert scratch.exists()  # until the cleanup runs
    run_until_idle()
    assert not scratch.exists()


def test_incident_dir_refuses_bad_or_unknown_ids(transactional_db):
    with pytest.raises(MessageError, match="not a UUID"):
        workflow.IncidentDir("../../etc")
    with pytest.raises(UnknownIncident):
        workflow.IncidentDir(str(uuid.uuid4()))


def test_cleanup_waits_while_a_message_is_in_flight(incident_id):
    workflow.send(message={"IncidentID": incident_id, "left": 0}, queue="probe_chain")
    workflow.FlushMessages()
    workflow.Cancel(incident_id, reason="stop")
    workflow.FlushMessages()
    cleanup = MessageLog.objects.get(destination=CLEANUP_QUEUE)
    with pytest.raises(Deferred, match="waits for messages in flight"):
        dispatch.deliver(CLEANUP_QUEUE, cleanup.body)
    assert Incident.objects.get(pk=incident_id).cleaned_at is None
    run_until_idle()  # the in-flight message is logged NOT PROCESSED, then cleanup runs
    assert MessageLog.objects.get(destination="probe_chain").status == MessageStatus.NOT_PROCESSED
    assert Incident.objects.get(pk=incident_id).cleaned_at is not None


def test_cleanup_stops_waiting_for_a_queue_nobody_consumes(incident_id, settings):
    settings.WORKFLOW_CLEANUP_WAIT_SECONDS = 60
    workflow.send(message={"IncidentID": incident_id}, queue="nobody_consumes_this")
    workflow.FlushMessages()
    workflow.Cancel(incident_id, reason="stop")
    workflow.FlushMessages()
    cleanup = MessageLog.objects.get(destination=CLEANUP_QUEUE)
    with pytest.raises(Deferred, match="waits for messages in flight"):  # not yet: 59 s
        dispatch.deliver(CLEANUP_QUEUE, cleanup.body, waiting_since=time.time() - 59)
    assert dispatch.deliver(CLEANUP_QUEUE, cleanup.body,
                            waiting_since=time.time() - 61).result is Result.COMPLETE
    stranded = MessageLog.objects.get(destination="nobody_consumes_this")
    assert stranded.status == MessageStatus.NOT_PROCESSED
    assert "no worker took it within 61 s" in stranded.comment
    assert Incident.objects.get(pk=incident_id).cleaned_at is not None


def test_cleanup_keeps_waiting_for_a_running_handler(incident_id, settings):
    settings.WORKFLOW_CLEANUP_WAIT_SECONDS = 60
    workflow.send(message={"IncidentID": incident_id, "left": 0}, queue="probe_chain")
    workflow.FlushMessages()
    MessageLog.objects.filter(destination="probe_chain").update(status=MessageStatus.PROCESSING)
    workflow.Cancel(incident_id, reason="stop")
    workflow.FlushMessages()
    cleanup = MessageLog.objects.get(destination=CLEANUP_QUEUE)
    with pytest.raises(Deferred, match="waits for messages in flight"):
        dispatch.deliver(CLEANUP_QUEUE, cleanup.body, waiting_since=time.time() - 3600)
    assert MessageLog.objects.get(destination="probe_chain").status == MessageStatus.PROCESSING


def test_forced_cleanup_does_not_wait(incident_id):
    workflow.send(message={"IncidentID": incident_id, "left": 0}, queue="probe_chain")
    workflow.FlushMessages()
    workflow.Cancel(incident_id, reason="stop", status="KILLED", force=True)
    workflow.FlushMessages()
    cleanup = MessageLog.objects.get(destination=CLEANUP_QUEUE)
    assert dispatch.deliver(CLEANUP_QUEUE, cleanup.body).result is Result.COMPLETE
    assert Incident.objects.get(pk=incident_id).cleaned_at is not None


def test_force_on_an_ended_incident_cleans_up_without_changing_its_status(incident_id):
    workflow.Cancel(incident_id, reason="first")
    workflow.FlushMessages()
    workflow.Complete(incident_id, force=True)
    workflow.FlushMessages()
    incident = Incident.objects.get(pk=incident_id)
    assert (incident.status, incident.comment) == (IncidentStatus.CANCELLED, "first")
    assert MessageLog.objects.filter(destination=CLEANUP_QUEUE).count() == 2


def test_cleanup_of_a_live_incident_is_refused(incident_id):
    workflow.Complete(incident_id)
    workflow.FlushMessages()
    cleanup = MessageLog.objects.get(destination=CLEANUP_QUEUE)
    Incident.objects.filter(pk=incident_id).update(status=IncidentStatus.ACTIVE)
    assert dispatch.deliver(CLEANUP_QUEUE, cleanup.body).result is Result.NOT_PROCESSED
    assert Incident.objects.get(pk=incident_id).cleaned_at is None
