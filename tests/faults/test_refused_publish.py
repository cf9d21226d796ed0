"""A message RabbitMQ refuses holds up no other: it is set aside, tried again with a growing
delay, and finally given up as ERROR with its incident."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
from django.utils import timezone
from kombu import Exchange, Queue

from incidents import workflow
from incidents.engine import outbox
from incidents.models import Incident, IncidentStatus, MessageLog, MessageStatus

pytestmark = pytest.mark.services  # the embedded broker refuses no queue

REFUSED = "refused_queue"


@contextmanager
def a_queue_the_broker_refuses() -> Iterator[None]:
    """The queue exists with other arguments than the engine's: PRECONDITION_FAILED."""
    from wfproject.celery import app

    with app.connection_for_write() as connection:
        queue = Queue(REFUSED, Exchange(REFUSED, "direct", durable=True), routing_key=REFUSED,
                      durable=True).bind(connection.default_channel)
        queue.declare()  # without the dead-letter arguments the engine declares
        try:
            yield
        finally:
            queue.delete()


def due_now(message_id: str) -> None:
    MessageLog.objects.filter(pk=message_id).update(submitted=timezone.now() - timedelta(hours=1))


def test_a_message_the_broker_refuses_holds_up_no_other_and_is_given_up_after_a_few_tries(
        incident_id, broker):
    other = workflow.CreateIncident(name="other", kind="TEST")
    with a_queue_the_broker_refuses():
        refused = workflow.send({"IncidentID": incident_id}, REFUSED)
        others = [workflow.send({"IncidentID": other, "n": n}, "A_queue") for n in range(20)]
        workflow.FlushMessages()  # one batch, the refused message first

        assert MessageLog.objects.filter(pk__in=others, status=MessageStatus.SENT).count() == 20
        row = MessageLog.objects.get(pk=refused)
        assert (row.status, row.publish_failures) == (MessageStatus.QUEUED, 1)
        assert "refused" in row.comment and REFUSED in row.comment
        outbox.relay_once()  # not due yet: it waits out its delay
        assert MessageLog.objects.get(pk=refused).publish_failures == 1

        for _ in range(outbox.MAX_PUBLISH_FAILURES - 1):
            due_now(refused)
            outbox.relay_once()
        row.refresh_from_db()

    assert (row.status, row.publish_failures) == (MessageStatus.ERROR, outbox.MAX_PUBLISH_FAILURES)
    incident = Incident.objects.get(pk=incident_id)
    assert incident.status == IncidentStatus.ERROR and "broker refused" in incident.comment
    assert incident.ended_by == "broker"
    assert Incident.objects.get(pk=other).status == IncidentStatus.PENDING
