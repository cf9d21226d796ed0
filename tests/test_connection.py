"""OpenConnection / CloseConnection / SetLoggingLevel and deeply nested input."""
from __future__ import annotations

import logging

import pytest

from incidents import workflow
from incidents.exceptions import BrokerUnavailable, MessageError


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
