"""Cancel, kill and cleanup racing a handler mid-run or mid-commit."""
from __future__ import annotations

import pytest

from incidents import workflow
from incidents.engine import operations, registry, runs
from incidents.engine.context import HandlerRun
from incidents.engine.runs import Result
from incidents.models import HandlerState, Incident, IncidentStatus, MessageLog, MessageStatus
from incidents.testing import run_until_idle

pytestmark = pytest.mark.usefixtures("broker")


def claimed(incident_id: str, queue: str, **fields: object) -> tuple[dict, HandlerRun]:
    message = {"IncidentID": incident_id, **fields}
    workflow.send(message=message, queue=queue)
    workflow.FlushMessages()
    MessageLog.objects.filter(pk=message["MessageID"]).update(
        status=MessageStatus.PROCESSING, attempts=1)
    run = HandlerRun(originator="racer", message_id=message["MessageID"],
                              incident_id=incident_id, attempt=1)
    return message, run


def test_a_kill_during_a_handler_run_drops_everything_that_run_would_commit(incident_id):
    @workflow.handler
    def racer(message):
        workflow.Persist.Put(incident_id, {"effect": 1})
        workflow.send(message={"IncidentID": incident_id, "left": 1}, queue="probe_chain")
        operations.kill_incident(incident_id, reason="race", by="operator")  # meanwhile

    message, run = claimed(incident_id, "probe_count")
    outcome = runs.run_and_commit(registry.spec_of(racer), run, message)
    assert outcome.result is Result.DUPLICATE  # the kill took its claim: nothing committed
    assert not HandlerState.objects.exists()
    assert not MessageLog.objects.filter(destination="probe_chain").exists()
    row = MessageLog.objects.get(pk=message["MessageID"])
    assert row.status == MessageStatus.NOT_PROCESSED and "killed by operator" in row.comment
    run_until_idle()
    assert Incident.objects.get(pk=incident_id).cleaned_at is not None


def test_a_cancel_during_a_handler_run_lets_it_commit_but_stops_what_it_sent(incident_id):
    @workflow.handler
    def racer(message):
        workflow.send(message={"IncidentID": incident_id, "left": 5}, queue="probe_chain")
        operations.cancel_incident(incident_id, reason="race", by="operator")  # meanwhile

    message, run = claimed(incident_id, "probe_count")
    assert runs.run_and_commit(registry.spec_of(racer), run, message).result is Result.COMPLETE
    run_until_idle()
    late = MessageLog.objects.get(destination="probe_chain")
    assert late.status == MessageStatus.NOT_PROCESSED
    incident = Incident.objects.get(pk=incident_id)
    assert incident.status == IncidentStatus.CANCELLED and incident.cleaned_at >= late.completed


def test_cleanup_never_runs_before_late_messages_of_a_completed_incident_are_done(incident_id):
    # A handler completes the incident while its siblings are still queued.
    for left in (3, 2, 1):
        workflow.send(message={"IncidentID": incident_id, "left": left}, queue="probe_chain")
    workflow.FlushMessages()
    workflow.Complete(incident_id)
    workflow.FlushMessages()
    run_until_idle()
    incident = Incident.objects.get(pk=incident_id)
    last = max(MessageLog.objects.filter(destination="probe_chain")
               .values_list("completed", flat=True))
    assert incident.cleaned_at >= last
    assert not MessageLog.objects.exclude(status__in=[MessageStatus.COMPLETE,
                                                      MessageStatus.NOT_PROCESSED]).exists()
