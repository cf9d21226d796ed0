"""A publish RabbitMQ takes and then drops (a full queue that rejects publishes, as a broker
that crashed before writing the message would lose it): the message log still has it, not
handled, and the relay publishes it again once its queue has nothing waiting."""
from __future__ import annotations

import pytest

from incidents import workflow
from incidents.models import IncidentStatus, MessageLog, MessageStatus
from incidents.processes import WorkerGroup, worker_env

from ..conftest import TEST_MODULES, ended, wait_until
from . import services

pytestmark = pytest.mark.services

POLICY = ["rabbitmqctl", "-n", "rabbit@localhost"]


def test_a_publish_the_broker_drops_is_republished_by_the_relay(transactional_db, broker):
    from wfproject.celery import app

    services.need_control("rabbitmqctl")
    if not app.conf.broker_url.startswith("amqp"):
        pytest.skip("queue policies are RabbitMQ's")
    # A full queue that refuses new messages: RabbitMQ drops every publish to it.
    services.run(*POLICY, "set_policy", "-p", "wf", "--apply-to", "queues", "refuse",
                 "^probe_chain$", '{"max-length": 0, "overflow": "reject-publish"}')
    try:
        incident_id = workflow.CreateIncident(name="dropped", kind="TEST")
        message_id = workflow.send(message={"IncidentID": incident_id, "left": 2}, queue="probe_chain")
        assert workflow.FlushMessages() == 1
        assert MessageLog.objects.get(pk=message_id).status == MessageStatus.SENT
    finally:
        services.run(*POLICY, "clear_policy", "-p", "wf", "refuse")
    env = worker_env({"WORKFLOW_MODULES": TEST_MODULES, "WORKFLOW_RELAY_STALE_SECONDS": "1",
                      "WORKFLOW_RELAY_INTERVAL_SECONDS": "1"})
    with WorkerGroup(env=env) as group:
        group.start("dropped1")
        incident = wait_until(lambda: ended(incident_id), what="the relay to publish it again")
    assert incident.status == IncidentStatus.COMPLETE
    assert MessageLog.objects.filter(incident_id=incident_id, destination="probe_chain").count() == 3
