"""send() and FlushMessages(): validation, staging, publishing."""
from __future__ import annotations

import datetime as dt
import logging
import uuid

import pytest

from incidents import workflow
from incidents.exceptions import (
    MessageError,
    MessageTypeError,
    QueueNameError,
    UnknownIncident,
    WorkflowError,
)
from incidents.models import MessageLog, MessageStatus
from incidents.testing import queued_count

pytestmark = pytest.mark.usefixtures("broker")


def nothing_stored_or_sent() -> bool:
    return MessageLog.objects.count() == 0 and queued_count("A_queue") == 0


def test_send_returns_the_message_id_and_adds_it_and_the_originator(incident_id):
    message = {"IncidentID": incident_id, "payload": [1, 2]}
    message_id = workflow.send(message=message, queue="A_queue")
    assert uuid.UUID(message_id)
    assert message["MessageID"] == message_id
    assert message["originator"] == ""


def test_nothing_leaves_before_flush_outside_a_handler(incident_id):
    workflow.send(message={"IncidentID": incident_id}, queue="A_queue")
    assert nothing_stored_or_sent()
    assert workflow.FlushMessages() == 1
    row = MessageLog.objects.get()
    assert (row.destination, row.status, row.originator) == ("A_queue", MessageStatus.SENT, "")
    assert queued_count("A_queue") == 1


def test_the_seed_argument_order_and_keywords_all_work(incident_id):
    workflow.send("A_queue", {"IncidentID": incident_id})
    workflow.send({"IncidentID": incident_id}, "A_queue")
    workflow.send(queue="A_queue", message={"IncidentID": incident_id}, src_tag="s", dest_tag="d")
    workflow.FlushMessages()
    assert MessageLog.objects.filter(destination="A_queue").count() == 3
    assert MessageLog.objects.filter(src_tag="s", dest_tag="d").count() == 1


def test_the_logged_body_is_the_message_as_sent(incident_id):
    message_id = workflow.send(message={"IncidentID": incident_id, "n": 1.5, "t": (1, 2)},
                               queue="A_queue")
    workflow.FlushMessages()
    body = MessageLog.objects.get(pk=message_id).body
    assert body == {"IncidentID": incident_id, "n": 1.5, "t": [1, 2], "MessageID": message_id,
                    "originator": ""}


@pytest.mark.parametrize(
    ("message", "error", "says"),
    [
        ("not a dict", MessageTypeError, "send a dict"),
        ({"no": "id"}, MessageError, "no 'IncidentID' key"),
        ({"IncidentID": "not-a-uuid"}, MessageError, "is not a UUID"),
        ({"IncidentID": 42}, MessageTypeError, "pass the string returned by CreateIncident"),
    ],
)
def test_malformed_messages_are_refused_clearly(transactional_db, message, error, says):
    with pytest.raises(error, match=says):
        workflow.send(message=message, queue="A_queue")
    assert isinstance(error("x"), WorkflowError)
    workflow.FlushMessages()
    assert nothing_stored_or_sent()


def test_an_unknown_incident_is_refused(transactional_db):
    with pytest.raises(UnknownIncident, match="no incident has IncidentID"):
        workflow.send(message={"IncidentID": str(uuid.uuid4())}, queue="A_queue")
    workflow.FlushMessages()
    assert nothing_stored_or_sent()


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ({"when": dt.datetime(2026, 1, 1)}, r"message\['data'\]\['when'\] is a datetime"),
        ({1: "int key"}, r"message\['data'\] has the key 1 \(int\)"),
        ([float("nan")], r"message\['data'\]\[0\] is nan"),
        ({"s": {1, 2}}, r"message\['data'\]\['s'\] is a set"),
    ],
)
def test_non_json_values_are_refused_naming_the_key(incident_id, value, says):
    with pytest.raises(MessageError, match=says):
        workflow.send(message={"IncidentID": incident_id, "data": value}, queue="A_queue")
    workflow.FlushMessages()
    assert nothing_stored_or_sent()


def test_a_message_over_the_size_limit_is_refused(incident_id, settings):
    settings.WORKFLOW_MAX_MESSAGE_BYTES = 1000
    with pytest.raises(MessageError, match="over the limit of 1000"):
        workflow.send(message={"IncidentID": incident_id, "blob": "x" * 1000}, queue="A_queue")
    workflow.FlushMessages()
    assert nothing_stored_or_sent()


@pytest.mark.parametrize("queue", ["", "_Cleanup", "has space", "a/b", 7, None, "x" * 201,
                                   "amq.gen-1"])
def test_bad_queue_names_are_refused(incident_id, queue):
    with pytest.raises(QueueNameError):
        workflow.send(message={"IncidentID": incident_id}, queue=queue)
    workflow.FlushMessages()
    assert nothing_stored_or_sent()


def test_bad_tags_are_refused(incident_id):
    with pytest.raises(MessageTypeError, match="src_tag"):
        workflow.send(message={"IncidentID": incident_id}, queue="A_queue", src_tag=3)


def test_a_message_to_an_ended_incident_is_dropped_with_a_warning(incident_id, caplog):
    workflow.Cancel(incident_id, reason="test")
    workflow.FlushMessages()
    with caplog.at_level(logging.WARNING, logger="incidents"):
        assert workflow.send(message={"IncidentID": incident_id}, queue="A_queue") is None
    assert "is CANCELLED; message to A_queue dropped" in caplog.text
    workflow.FlushMessages()
    assert not MessageLog.objects.filter(destination="A_queue").exists()


def test_nul_characters_are_refused_before_the_database_sees_them(incident_id):
    with pytest.raises(MessageError, match=r"message\['s'\] contains a NUL character"):
        workflow.send(message={"IncidentID": incident_id, "s": "a\x00"}, queue="A_queue")
    with pytest.raises(MessageError, match="NUL"):
        workflow.send(message={"IncidentID": incident_id, "k\x00": 1}, queue="A_queue")
    with pytest.raises(MessageError, match="dest_tag contains a NUL"):
        workflow.send(message={"IncidentID": incident_id}, queue="A_queue", dest_tag="\x00")
    with pytest.raises(MessageError, match="reason contains a NUL"):
        workflow.Cancel(incident_id, reason="\x00")
    with pytest.raises(MessageError, match=r"data\[0\] contains a NUL"):
        workflow.Persist.Put(incident_id, ["\x00"])
    workflow.FlushMessages()
    assert nothing_stored_or_sent()


def test_messages_flushed_inside_a_transaction_go_out_when_it_commits(incident_id):
    from django.db import transaction

    with transaction.atomic():
        workflow.send(message={"IncidentID": incident_id}, queue="A_queue")
        workflow.FlushMessages()
        assert queued_count("A_queue") == 0  # a worker could not see its log row yet
    assert queued_count("A_queue") == 1
    assert MessageLog.objects.get().status == MessageStatus.SENT


def test_nothing_is_published_when_the_surrounding_transaction_rolls_back(incident_id):
    from django.db import transaction

    with pytest.raises(RuntimeError), transaction.atomic():
        workflow.send(message={"IncidentID": incident_id}, queue="A_queue")
        workflow.FlushMessages()
        raise RuntimeError("caller fails after flushing")
    assert nothing_stored_or_sent()


def test_text_that_is_not_valid_unicode_is_refused(incident_id):
    with pytest.raises(MessageError, match=r"message\['s'\] contains a lone surrogate"):
        workflow.send(message={"IncidentID": incident_id, "s": "\ud800"}, queue="A_queue")
    workflow.FlushMessages()
    assert nothing_stored_or_sent()


def test_provided_caller_becomes_the_originator_and_must_be_text(incident_id):
    message = {"IncidentID": incident_id}
    message_id = workflow.send(message, "A_queue", providedCaller="Simulation Completed")
    workflow.FlushMessages()
    row = MessageLog.objects.get(pk=message_id)
    assert (row.originator, row.body["originator"], message["originator"]) == (
        "Simulation Completed",) * 3
    with pytest.raises(MessageTypeError, match="providedCaller 7 must be a string"):
        workflow.send({"IncidentID": incident_id}, "A_queue", providedCaller=7)


def test_inside_a_handler_sends_are_from_the_handler_unless_a_caller_is_provided(incident_id):
    @workflow.handler
    def relay_handler(message):
        workflow.send({"IncidentID": message["IncidentID"]}, "A_queue")
        workflow.send({"IncidentID": message["IncidentID"]}, "A_queue", providedCaller="EDI")

    relay_handler({"IncidentID": incident_id})
    assert sorted(MessageLog.objects.values_list("originator", flat=True)) == [
        "EDI", "relay_handler"]


def test_the_health_checks_test_incident_name_is_the_one_non_uuid_id_accepted(transactional_db):
    message = {"IncidentID": "test_workflow_health"}
    message_id = workflow.send(message, "A_queue")
    workflow.FlushMessages()
    row = MessageLog.objects.get(pk=message_id)
    assert row.body["IncidentID"] == "test_workflow_health"  # as its handlers compare it
    assert row.incident.name == "test_workflow_health" and row.incident.kind == "HEALTH_CHECK"
    assert workflow._IsActive("test_workflow_health") is True
    with pytest.raises(MessageError, match="is not a UUID"):
        workflow.send({"IncidentID": "test_workflow_other"}, "A_queue")
