"""/metrics: off unless enabled, token-protected when a token is set, and its values follow
the work (incidents, messages, handler durations, lock waits, outbox backlog, dead letters)."""
from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from incidents import workflow
from incidents.engine import deadletter, dispatch
from incidents.models import MessageLog, MessageStatus
from incidents.testing import run_until_idle

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("broker")]

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
def metrics_on(settings):
    settings.WORKFLOW_METRICS = True
    settings.WORKFLOW_METRICS_TOKEN = ""


def scrape(client) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200, response.content
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(response.content.decode())
            for sample in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def sent(incident_id: str, queue: str, **fields) -> dict:
    message = {"IncidentID": incident_id, **fields}
    workflow.send(message=message, queue=queue)
    workflow.FlushMessages()
    return message


def test_metrics_are_off_unless_enabled(client, db):
    response = client.get("/metrics")
    assert response.status_code == 404 and b"WORKFLOW_METRICS=1" in response.content


def test_with_a_token_a_scrape_must_present_it(client, db, metrics_on, settings):
    settings.WORKFLOW_METRICS_TOKEN = "s3cret"
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret")
    assert response.status_code == 200 and b"workflow_incidents" in response.content


def test_incidents_messages_and_handler_durations_follow_the_work(client, metrics_on,
                                                                   transactional_db):
    before = scrape(client)
    incident_id = workflow.CreateIncident(name="metrics", kind="DUMMY_INCIDENT")
    sent(incident_id, "A_queue")
    running = scrape(client)
    assert value(running, "workflow_incidents", status="PENDING") == \
        value(before, "workflow_incidents", status="PENDING") + 1
    assert value(running, "workflow_messages", queue="A_queue", status="SENT") == 1
    run_until_idle()  # A -> B -> Complete -> cleanup
    after = scrape(client)
    assert value(after, "workflow_incidents", status="COMPLETE") == \
        value(before, "workflow_incidents", status="COMPLETE") + 1
    assert value(after, "workflow_messages", queue="A_queue", status="SENT") == 0
    for queue in ("A_queue", "B_queue"):
        assert value(after, "workflow_messages", queue=queue, status="COMPLETE") == 1
        assert value(after, "workflow_handler_duration_seconds_count", queue=queue) == 1
        assert value(after, "workflow_handler_duration_seconds_bucket", queue=queue,
                     le="+Inf") == 1
    durations = MessageLog.objects.get(destination="A_queue").duration
    assert value(after, "workflow_handler_duration_seconds_sum", queue="A_queue") == \
        pytest.approx(durations)


def test_lock_waits_of_atomic_handlers_are_counted_with_their_time(client, metrics_on,
                                                                    incident_id):
    message = sent(incident_id, "quicksort_merge", node="rL", sorted=[1])
    # Its first try found the merge handler busy 2.5 s ago; this try gets the lock.
    outcome = dispatch.deliver("quicksort_merge", message, waiting_since=time.time() - 2.5)
    assert outcome.result is dispatch.Result.COMPLETE
    samples = scrape(client)
    assert value(samples, "workflow_lock_wait_seconds_count", queue="quicksort_merge") == 1
    assert value(samples, "workflow_lock_wait_seconds_bucket", queue="quicksort_merge",
                 le="1.0") == 0
    assert value(samples, "workflow_lock_wait_seconds_bucket", queue="quicksort_merge",
                 le="10.0") == 1
    assert 2.5 <= value(samples, "workflow_lock_wait_seconds_sum", queue="quicksort_merge") < 10
    # Plain handlers have no lock to wait for, also when they come the long way (redelivered).
    chain = sent(incident_id, "probe_chain", left=0)
    dispatch.deliver("probe_chain", chain, redelivered=True, waiting_since=time.time() - 1)
    assert value(scrape(client), "workflow_lock_wait_seconds_count", queue="probe_chain") == 0


def test_the_outbox_backlog_counts_messages_committed_but_not_published(client, metrics_on,
                                                                        incident_id):
    assert value(scrape(client), "workflow_outbox_backlog") == 0
    message = sent(incident_id, "probe_chain", left=1)
    # As if its sender died between commit and publish, a minute ago.
    MessageLog.objects.filter(pk=message["MessageID"]).update(
        status=MessageStatus.QUEUED, submitted=timezone.now() - timedelta(minutes=1))
    assert value(scrape(client), "workflow_outbox_backlog") == 1


def test_dead_letters_are_counted_until_an_operator_takes_them(client, metrics_on, db):
    from wfproject.celery import app

    deadletter.inspect(purge=True)
    assert value(scrape(client), "workflow_dead_letters") == 0
    with app.connection_for_write() as connection:
        deadletter.declare(connection)
        connection.Producer().publish({"not": "ours"}, exchange="", serializer="json",
                                      routing_key=deadletter.DEAD_LETTER_QUEUE)
    assert value(scrape(client), "workflow_dead_letters") == 1
    assert len(deadletter.inspect(purge=True)) == 1
    assert value(scrape(client), "workflow_dead_letters") == 0
