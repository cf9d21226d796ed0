""""Why is it not moving?": diagnose_incident and the admin panel name every reason an
incident may be stuck, with its evidence and age, each shown by a workflow built to show it
(tests/workflows/stuck.py)."""
from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse
from django.utils import timezone

from incidents import workflow
from incidents.engine import deadletter, diagnosis, diagnosis_facts, ledger, queue_consumers, registry
from incidents.models import Incident, IncidentStatus, Lock, MessageLog, MessageStatus
from incidents.processes import WorkerGroup, worker_env
from incidents.testing import run_until_idle

from .conftest import TEST_MODULES, staff, wait_until

registry.load_workflow_modules(["tests.workflows.stuck"])


@pytest.fixture
def stuck_workers(transactional_db, broker):
    with WorkerGroup(env=worker_env({"WORKFLOW_MODULES": f"{TEST_MODULES},tests.workflows.stuck"})) as group:
        yield group


def kinds(reasons: list[diagnosis.Reason]) -> list[str]:
    return [r.kind for r in reasons]


def only(reasons: list[diagnosis.Reason], kind: str) -> diagnosis.Reason:
    found = [r for r in reasons if r.kind == kind]
    assert len(found) == 1, f"expected one {kind} among {kinds(reasons)}"
    return found[0]


def send(incident_id: str, queue: str, **fields) -> str:
    """Send (committed and published); the message's id."""
    message_id = workflow.send(message={"IncidentID": incident_id, **fields}, queue=queue)
    workflow.FlushMessages()
    return str(message_id)


# Without workers


def test_a_graph_that_ended_without_complete_is_said_to_never_move_again(incident_id, broker):
    last = send(incident_id, "stuck_dead_end")
    run_until_idle()
    assert Incident.objects.get(pk=incident_id).status == IncidentStatus.ACTIVE
    reasons = diagnosis.diagnose(incident_id)
    assert kinds(reasons) == [diagnosis.NOTHING_IN_FLIGHT]
    reason = reasons[0]
    assert reason.summary.startswith("nothing will ever happen: no message is in flight; "
                                     "the graph ended without Complete")
    assert reason.evidence["last_message"]["id"] == last
    assert reason.target == diagnosis.Target("message", {"id": last})
    assert reason.since == MessageLog.objects.get(pk=last).completed


def test_a_pending_incident_with_nothing_sent_is_said_to_never_start(incident_id):
    [reason] = diagnosis.diagnose(incident_id)
    assert reason.kind == diagnosis.NOTHING_IN_FLIGHT
    assert "no handler has started" in reason.summary and "first message" in reason.summary
    assert reason.since == Incident.objects.get(pk=incident_id).created_at


def test_a_lock_taken_outside_a_handler_is_named_with_its_holder_and_lease(incident_id):
    workflow.GetLock("gate", incident_id)
    held = Lock.objects.get(incident_id=incident_id, label="gate")
    reason = only(diagnosis.diagnose(incident_id), diagnosis.LOCK_HELD)
    assert reason.evidence["label"] == "gate" and reason.evidence["holder"] == held.owner
    assert reason.evidence["holder_message"] is None
    assert reason.since == held.acquired_at and reason.evidence["lease_until"] == held.expires_at
    assert f"process {held.owner}" in reason.summary
    assert reason.target == diagnosis.Target("locks", {"incident": incident_id})
    workflow.ReleaseLock("gate", incident_id)
    assert diagnosis.LOCK_HELD not in kinds(diagnosis.diagnose(incident_id))


def test_an_ended_incident_whose_cleanup_is_gone_says_nothing_will_clean_it(incident_id):
    ledger.end(incident_id, IncidentStatus.ERROR, "ended without a cleanup", "test")
    reasons = diagnosis.diagnose(incident_id)
    assert kinds(reasons) == [diagnosis.CLEANUP_MISSING]
    assert "kill" in reasons[0].summary and reasons[0].evidence["cleanup_message"] is None


def test_an_ended_and_cleaned_incident_has_no_reason(incident_id):
    ledger.end(incident_id, IncidentStatus.COMPLETE, "", "test")
    ledger.mark_cleaned(incident_id)
    assert diagnosis.diagnose(incident_id) == []
    out = StringIO()
    call_command("diagnose_incident", incident_id, stdout=out)
    assert "ended and cleaned up" in out.getvalue()


def facts_with_run(running: float, durations: list[float]) -> tuple[diagnosis_facts.Facts, object]:
    now = timezone.now()
    run = diagnosis_facts.Run("m1", "q", "h", now - timedelta(seconds=running), 1, "host:42")
    median = sorted(durations)[len(durations) // 2] if len(durations) >= diagnosis_facts.MIN_SAMPLES else None
    facts = diagnosis_facts.Facts(
        incident_id="i", status=IncidentStatus.ACTIVE, created_at=now, ended_at=None,
        cleaned_at=None, messages={}, last_ended=None, backlog=[], runs=[run],
        usual={"q": diagnosis_facts.Usual(median, len(durations))}, locks=[], lock_store="database",
        cleanup=None, consumers={}, earlier_lock_waits={}, dead_letters=[])
    return facts, now


def test_a_run_is_long_only_past_three_times_its_usual_duration_and_the_floor():
    facts, now = facts_with_run(10, [2.0] * 5)  # past the floor (5 s) and 3 x usual (6 s)
    [reason] = diagnosis.reasons(facts, now)
    assert (reason.kind, reason.evidence["usual_seconds"], reason.evidence["worker"]) == (
        diagnosis.LONG_RUN, 2.0, "host:42")
    assert "median of 5 runs" in reason.summary and "worker process host:42" in reason.summary
    facts, now = facts_with_run(5.5, [2.0] * 5)  # past the floor, within 3 x usual
    assert diagnosis.reasons(facts, now) == []
    facts, now = facts_with_run(6, [0.1] * 2)  # too few samples: the floor decides
    [reason] = diagnosis.reasons(facts, now)
    assert "too few completed runs to know its usual time (2)" in reason.summary
    assert reason.evidence["usual_seconds"] is None


@pytest.mark.stacks
def test_dead_letters_of_the_incident_are_named_and_others_ignored(incident_id, broker):
    deadletter.inspect(10_000, purge=True)
    other = workflow.CreateIncident(name="another", kind="TEST")
    for owner in (incident_id, other):
        body = json.dumps([[{"IncidentID": owner, "MessageID": "not-a-uuid"}], {}, {}])
        assert deadletter.set_aside(body, queue="stuck_slow", reason="not a message of ours: test",
                                    content_type="application/json", content_encoding="utf-8",
                                    headers={})
    try:
        reason = only(diagnosis.diagnose(incident_id), diagnosis.DEAD_LETTERS)
        assert (reason.evidence["count"], reason.evidence["scanned"]) == (1, 2)
        assert reason.evidence["letters"][0]["queue"] == "stuck_slow"
        assert "not a message of ours: test" in reason.summary
        assert reason.target.describe() == "`manage.py dead_letters`"
    finally:
        assert len(deadletter.inspect(10_000, purge=True)) == 2  # the scan put them back


# The admin


def test_the_admin_panel_loads_the_reasons_on_demand_with_links(incident_id, broker):
    viewer = staff("viewer", "view_incident", "view_messagelog", "view_lock")
    waiting = send(incident_id, "stuck_unconsumed")  # no worker runs: nobody consumes it
    workflow.GetLock("gate", incident_id)
    page = viewer.get(reverse("admin:incidents_incident_change", args=[incident_id])).content.decode()
    url = reverse("admin:incidents_incident_diagnosis", args=[incident_id])
    assert 'id="wf-diagnose"' in page and url in page and "wf-reason" not in page  # not computed yet

    panel = viewer.get(url)
    assert panel.status_code == 200
    html = panel.content.decode()
    assert f'data-kind="{diagnosis.QUEUE_WITHOUT_CONSUMER}"' in html
    assert f'data-kind="{diagnosis.LOCK_HELD}"' in html
    # The links open pages showing what each reason names.
    log_link = panel.context["reasons"][0].url
    listed = viewer.get(log_link)
    assert listed.status_code == 200 and [str(r.pk) for r in listed.context["cl"].result_list] == [waiting]
    locks_link = next(s.url for s in panel.context["reasons"] if s.reason.kind == diagnosis.LOCK_HELD)
    assert [row.label for row in viewer.get(locks_link).context["cl"].result_list] == ["gate"]

    assert staff("nobody").get(url).status_code == 403
    workflow.ReleaseLock("gate", incident_id)


def test_the_panel_is_offered_only_until_the_incident_is_cleaned_up(incident_id):
    viewer = staff("viewer", "view_incident")
    change = reverse("admin:incidents_incident_change", args=[incident_id])
    ledger.end(incident_id, IncidentStatus.COMPLETE, "", "test")
    assert 'id="wf-diagnose"' in viewer.get(change).content.decode()
    ledger.mark_cleaned(incident_id)
    assert 'id="wf-diagnose"' not in viewer.get(change).content.decode()
    html = viewer.get(reverse("admin:incidents_incident_diagnosis", args=[incident_id])).content.decode()
    assert 'id="wf-no-reason"' in html and "cleaned up" in html


# With workers


@pytest.mark.e2e
def test_a_queue_no_worker_consumes_is_named_then_the_cleanup_waiting_for_it(stuck_workers):
    stuck_workers.start("w1", queues=["stuck_slow", "_Cleanup"])
    incident_id = workflow.CreateIncident(name="unconsumed", kind="TEST")
    first = send(incident_id, "stuck_unconsumed")
    send(incident_id, "stuck_unconsumed")
    # The workers (embedded broker) or RabbitMQ tell who consumes what.
    asked = queue_consumers.ask(["stuck_slow", "stuck_unconsumed"], timeout=5)
    assert (asked["stuck_slow"].count, asked["stuck_unconsumed"].count) == (1, 0)
    assert asked["stuck_unconsumed"].known

    reason = only(diagnosis.diagnose(incident_id), diagnosis.QUEUE_WITHOUT_CONSUMER)
    assert (reason.evidence["queue"], reason.evidence["count"], reason.evidence["consumers"],
            reason.evidence["oldest_message"]) == ("stuck_unconsumed", 2, 0, first)
    assert reason.since == MessageLog.objects.get(pk=first).submitted
    assert reason.target.params == {"incident": incident_id, "queue": "stuck_unconsumed",
                                    "status": "QUEUED,SENT"}

    out = StringIO()
    call_command("diagnose_incident", incident_id[:8], "--json", stdout=out)
    printed = json.loads(out.getvalue())
    assert printed["incident"] == incident_id and printed["status"] == IncidentStatus.PENDING
    [shown] = [r for r in printed["reasons"] if r["kind"] == diagnosis.QUEUE_WITHOUT_CONSUMER]
    assert shown["evidence"]["count"] == 2 and shown["age_seconds"] >= 0
    out = StringIO()
    call_command("diagnose_incident", incident_id, stdout=out)
    text = out.getvalue()
    assert "[queue_without_consumer] for " in text and "2 message(s) wait in queue stuck_unconsumed" in text
    assert "see: the message log of queue stuck_unconsumed" in text

    workflow.Cancel(incident_id, reason="to see the cleanup wait")
    workflow.FlushMessages()
    cleanup_id = str(MessageLog.objects.get(incident_id=incident_id, destination="_Cleanup").pk)
    reason = only(diagnosis.diagnose(incident_id), diagnosis.CLEANUP_WAITING)
    assert reason.evidence["waits_for_queued"] == {"stuck_unconsumed": 2}
    assert reason.evidence["cleanup_message"]["id"] == cleanup_id
    assert reason.target == diagnosis.Target("message", {"id": cleanup_id})
    assert reason.since == Incident.objects.get(pk=incident_id).completed_at


@pytest.mark.e2e
def test_a_run_far_longer_than_its_handlers_usual_is_named_with_its_worker(stuck_workers, tmp_path):
    stuck_workers.start("w1", queues=["stuck_slow", "_Cleanup"])
    incident_id = workflow.CreateIncident(name="long run", kind="TEST")
    for _ in range(diagnosis_facts.MIN_SAMPLES):
        send(incident_id, "stuck_slow")
    wait_until(lambda: MessageLog.objects.filter(incident_id=incident_id,
                                                 status=MessageStatus.COMPLETE).count()
               == diagnosis_facts.MIN_SAMPLES, what="the quick runs")
    slow = send(incident_id, "stuck_slow", folder=str(tmp_path))
    wait_until(lambda: MessageLog.objects.filter(pk=slow, status=MessageStatus.PROCESSING).exists(),
               what="the slow run to show as PROCESSING")
    usual = diagnosis_facts.gather(incident_id, read_dead_letters=False).usual["stuck_slow"]
    assert usual.samples == diagnosis_facts.MIN_SAMPLES and usual.median is not None
    # A floor below the claim delay lets a test see a "long" run within a second.
    reason = wait_until(lambda: next((r for r in diagnosis.diagnose(incident_id, long_floor=0.5)
                                      if r.kind == diagnosis.LONG_RUN), None),
                        what="the run to count as long")
    row = MessageLog.objects.get(pk=slow)
    assert (reason.evidence["message"], reason.evidence["samples"], reason.evidence["worker"]) == (
        slow, diagnosis_facts.MIN_SAMPLES, row.consumer)
    assert row.consumer and reason.since == row.received
    assert reason.evidence["running_seconds"] > 3 * usual.median
    assert reason.target == diagnosis.Target("message", {"id": slow})

    (tmp_path / "release").touch()
    wait_until(lambda: MessageLog.objects.filter(pk=slow, status=MessageStatus.COMPLETE).exists(),
               what="the slow run to end")
    # It sent nothing and did not Complete: the incident will never move again.
    assert kinds(diagnosis.diagnose(incident_id)) == [diagnosis.NOTHING_IN_FLIGHT]


@pytest.mark.e2e
def test_a_held_atomic_lock_names_its_holder_and_the_delivery_waiting_for_it(stuck_workers, tmp_path):
    stuck_workers.start("w1", queues=["stuck_gate", "_Cleanup"])
    incident_id = workflow.CreateIncident(name="held lock", kind="TEST")
    holder = send(incident_id, "stuck_gate", folder=str(tmp_path), name="holder")
    wait_until(lambda: (tmp_path / "started-holder").exists(), what="the first run to start")
    waiter = send(incident_id, "stuck_gate")
    reasons = diagnosis.diagnose(incident_id)
    held = only(reasons, diagnosis.LOCK_HELD)
    assert (held.evidence["label"], held.evidence["holder_message"], held.evidence["holder_status"]) == (
        "_atomic:stuck_gate_handler", holder, MessageStatus.PROCESSING)
    assert held.evidence["holder"].startswith(f"{holder}:")
    wait = only(reasons, diagnosis.LOCK_WAIT)
    assert (wait.evidence["waiting"], wait.evidence["oldest_message"]) == (1, waiter)
    assert wait.target.params["queue"] == "stuck_gate"

    (tmp_path / "release").touch()
    wait_until(lambda: MessageLog.objects.filter(pk=waiter, status=MessageStatus.COMPLETE).exists(),
               what="the waiting delivery to run")
    assert MessageLog.objects.get(pk=waiter).lock_wait > 0  # the log kept how long it waited
    # The lock is given back just after the run's commit.
    wait_until(lambda: kinds(diagnosis.diagnose(incident_id)) == [diagnosis.NOTHING_IN_FLIGHT],
               what="the lock to be given back, and then nothing to be in flight")


def test_the_command_refuses_an_unknown_incident(transactional_db):
    with pytest.raises(CommandError, match="no incident's id starts with"):
        call_command("diagnose_incident", "deadbeef")
