"""The outbox relay: committed messages reach the broker even if the first publish failed."""
from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone
from kombu.exceptions import OperationalError

from incidents import workflow
from incidents.engine import outbox
from incidents.models import MessageLog, MessageStatus
from incidents.testing import purge_queues, queued_count, run_until_idle

pytestmark = pytest.mark.usefixtures("broker")


@pytest.fixture
def broker_down(monkeypatch):
    from wfproject.celery import app

    def refuse(*args, **kwargs):
        raise OperationalError("[Errno 111] Connection refused")

    monkeypatch.setattr(app, "send_task", refuse)


def test_messages_committed_while_the_broker_is_down_stay_queued(incident_id, broker_down):
    message_id = workflow.send(message={"IncidentID": incident_id}, queue="A_queue")
    assert workflow.FlushMessages() == 1  # committed; the publish failure is logged, not raised
    assert MessageLog.objects.get(pk=message_id).status == MessageStatus.QUEUED


def test_the_relay_publishes_stale_queued_messages_once(incident_id, monkeypatch):
    with monkeypatch.context() as patch:
        from wfproject.celery import app

        patch.setattr(app, "send_task", lambda *a, **k: (_ for _ in ()).throw(OperationalError()))
        message_id = workflow.send(message={"IncidentID": incident_id}, queue="A_queue")
        workflow.FlushMessages()
    assert outbox.relay_once() == 0  # not stale yet: its publisher may still be at work
    MessageLog.objects.update(submitted=timezone.now() - dt.timedelta(minutes=1))
    assert outbox.relay_once() == 1
    assert outbox.relay_once() == 0
    assert MessageLog.objects.get(pk=message_id).status == MessageStatus.SENT
    assert queued_count("A_queue") == 1
    run_until_idle()
    assert MessageLog.objects.get(pk=message_id).status == MessageStatus.COMPLETE


def test_the_relay_republishes_a_sent_message_the_broker_lost_once_its_queue_is_empty(
        incident_id):
    lost = workflow.send(message={"IncidentID": incident_id, "n": 1}, queue="A_queue")
    waiting = workflow.send(message={"IncidentID": incident_id, "n": 2}, queue="A_queue")
    workflow.FlushMessages()
    assert set(MessageLog.objects.values_list("status", flat=True)) == {MessageStatus.SENT}
    purge_queues(["A_queue"])  # the broker lost both (it crashed before writing them)
    outbox.publish([MessageLog.objects.get(pk=waiting)])  # one is back in the queue
    MessageLog.objects.update(submitted=timezone.now() - dt.timedelta(minutes=1))
    # Something waits in the queue: the lost message may be among it, so nothing is sent.
    assert outbox.relay_once() == 0
    purge_queues(["A_queue"])
    assert outbox.relay_once() == 2  # nothing waits, nothing handled: both were lost
    assert outbox.relay_once() == 0
    assert queued_count("A_queue") == 2
    run_until_idle()  # the first completes the incident (A -> B); the second finds it ended
    assert sorted(MessageLog.objects.filter(pk__in=[lost, waiting])
                  .values_list("status", flat=True)) == [MessageStatus.COMPLETE,
                                                         MessageStatus.NOT_PROCESSED]
