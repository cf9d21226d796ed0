"""A handler running longer than RabbitMQ's consumer_timeout: the broker takes the message
back and redelivers it; the run is neither lost nor its effects applied twice."""
from __future__ import annotations

import subprocess

import pytest

from incidents.models import HandlerState, IncidentStatus, MessageLog, MessageStatus

from ..conftest import ended, start_blocked_incident, wait_until

pytestmark = pytest.mark.services


def set_consumer_timeout(milliseconds: int) -> None:
    subprocess.run(["rabbitmqctl", "-n", "rabbit@localhost", "eval",
                    f"application:set_env(rabbit, consumer_timeout, {milliseconds})."],
                   check=True, capture_output=True, timeout=60)


@pytest.fixture
def short_consumer_timeout():
    from wfproject.celery import app

    if not app.conf.broker_url.startswith("amqp"):
        pytest.skip("consumer_timeout is RabbitMQ's")
    set_consumer_timeout(2000)
    yield
    set_consumer_timeout(1_800_000)  # RabbitMQ's default, 30 minutes


def test_a_handler_longer_than_the_consumer_timeout_is_not_lost_nor_applied_twice(
        short_consumer_timeout, workers, tmp_path):
    # Celery's worker exits when RabbitMQ closes its channel (celery/celery#6760); the second
    # worker, as a supervisor's restart would, takes the redelivered message.
    workers.start("w1")
    workers.start("w2")
    incident_id = start_blocked_incident(tmp_path, "long handler")
    # RabbitMQ checks consumer timeouts about once a minute, then closes the channel and
    # requeues the message; a second run starts while the first may still be waiting.
    wait_until(lambda: (tmp_path / "started-2").exists(), timeout=150,
               what="the broker to redeliver the timed-out message")
    (tmp_path / "release").touch()
    incident = wait_until(lambda: ended(incident_id), what="the incident to complete")
    assert incident.status == IncidentStatus.COMPLETE
    blocked = MessageLog.objects.get(incident_id=incident_id, destination="probe_block")
    assert blocked.status == MessageStatus.COMPLETE and blocked.attempts >= 2
    assert MessageLog.objects.filter(incident_id=incident_id, destination="probe_count").count() == 1
    assert HandlerState.objects.filter(incident_id=incident_id, handler="block_handler").count() == 1
