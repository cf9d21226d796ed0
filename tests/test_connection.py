"""OpenConnection / CloseConnection / SetLoggingLevel and deeply nested input."""
from __future__ import annotations

import logging

import pytest

from incidents import workflow
from incidents.exceptions import BrokerUnavailable, MessageError
from incidents.models import MessageLog, MessageStatus
from incidents.testing import queued_count


def test_open_connection_succeeds_on_the_configured_broker():
    workflow.OpenConnection()
    workflow.CloseConnection()


def test_an_unreachable_broker_is_named_without_its_password():
    from incidents.engine import worker

    with pytest.raises(BrokerUnavailable) as raised:
        worker.open_connection(retries=2, delay=0.01, url="amqp://wf:secret@127.0.0.1:1/wf")
    assert "amqp://wf:**@127.0.0.1:1/wf" in str(raised.value)
    assert "secret" not in str(raised.value)


def test_set_logging_level_sets_the_engine_log_level():
    engine_log = logging.getLogger("incidents")
    before = engine_log.level
    try:
        workflow.SetLoggingLevel("DEBUG")
        assert engine_log.level == logging.DEBUG
    finally:
        engine_log.setLevel(before)


def test_a_message_nested_too_deeply_is_refused(incident_id):
    deep: list = []
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(MessageError, match="nested deeper than 100 levels"):
        workflow.send(message={"IncidentID": incident_id, "d": deep}, queue="A_queue")


@pytest.mark.e2e  # on the embedded broker and on RabbitMQ
def test_each_open_send_flush_close_cycle_publishes_at_its_flush(incident_id, broker):
    # The original's external services open, send, flush and close on every call.
    sent = []
    for n in range(3):
        workflow.OpenConnection()
        sent.append(workflow.send(message={"IncidentID": incident_id, "n": n}, queue="A_queue",
                                  providedCaller="External Data Interface"))
        assert workflow.FlushMessages() == 1
        workflow.CloseConnection()
    rows = MessageLog.objects.filter(pk__in=sent)
    assert sorted(rows.values_list("status", flat=True)) == [MessageStatus.SENT] * 3
    assert set(rows.values_list("originator", flat=True)) == {"External Data Interface"}
    assert queued_count("A_queue") == 3
