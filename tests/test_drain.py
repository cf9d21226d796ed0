"""Drain, then kill: cancel now, let running handlers finish for N seconds, then kill what
still runs (KILLED) or, if nothing did, stay CANCELLED; DRAINING with a countdown meanwhile."""
from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse
from django.utils import timezone

from incidents import workflow
from incidents.engine import audit, dispatch, draining, interventions, registry
from incidents.engine.runs import Result
from incidents.exceptions import Deferred, MessageError
from incidents.models import Incident, IncidentStatus, MessageLog, MessageStatus

from .conftest import ended, staff, start_blocked_incident, wait_until

pytestmark = pytest.mark.usefixtures("broker")


def running_handler(incident_id: str) -> MessageLog:
    """A message of the incident that a handler is running (no worker needed)."""
    return MessageLog.objects.create(
        id=uuid.uuid4(), incident_id=incident_id, originator="", destination="probe_block",
        status=MessageStatus.PROCESSING, submitted=timezone.now(), attempts=1, body={})


def cleanup_message(incident_id: str) -> dict:
    return MessageLog.objects.get(incident_id=incident_id,
                                  destination=registry.CLEANUP_QUEUE).body


def deliver_cleanup(incident_id: str) -> Result:
    return dispatch.deliver(registry.CLEANUP_QUEUE, cleanup_message(incident_id)).result


def test_a_drain_cancels_at_once_and_its_cleanup_carries_the_deadline(incident_id):
    before = timezone.now()
    report = interventions.drain_incident(incident_id, seconds=30, reason="winding down",
                                          by="alice (admin)")
    incident = Incident.objects.get(pk=incident_id)
    assert report.started and (incident.status, incident.comment, incident.ended_by) == (
        IncidentStatus.CANCELLED, "winding down", "alice (admin)")
    deadline = datetime.fromisoformat(cleanup_message(incident_id)[draining.KILL_AFTER])
    assert before + timedelta(seconds=30) <= deadline <= timezone.now() + timedelta(seconds=30)
    [action] = audit.history(incident_id)
    assert (action.action, action.by, action.reason) == ("drain", "alice (admin)", "winding down")
    assert action.details == {"status_before": IncidentStatus.PENDING, "kill_after": 30,
                              "deadline": deadline.isoformat()}
    assert draining.in_progress(incident) == draining.Drain(deadline, 30)


def test_the_cleanup_waits_for_the_deadline_then_kills_what_still_runs(incident_id):
    running = running_handler(incident_id)
    interventions.drain_incident(incident_id, seconds=1, by="test")
    with pytest.raises(Deferred) as waiting:
        deliver_cleanup(incident_id)
    assert waiting.value.delay <= 1 + draining.PAST_THE_DEADLINE_SECONDS  # timed to the deadline
    assert Incident.objects.get(pk=incident_id).status == IncidentStatus.CANCELLED

    deadline = draining.deadline_of(cleanup_message(incident_id))
    wait_until(lambda: timezone.now() > deadline, timeout=10, what="the drain's deadline")
    assert deliver_cleanup(incident_id) is Result.COMPLETE
    incident = Incident.objects.get(pk=incident_id)
    assert (incident.status, incident.comment) == (
        IncidentStatus.KILLED, "drained for 1 s; killed 1 running handler(s)")
    assert incident.cleaned_at is not None and draining.in_progress(incident) is None
    running.refresh_from_db()
    assert running.status == MessageStatus.NOT_PROCESSED and "drained for 1 s" in running.comment
    assert MessageLog.objects.get(incident_id=incident_id,
                                  destination=registry.CLEANUP_QUEUE).status == MessageStatus.COMPLETE


def test_when_everything_finishes_in_time_it_stays_cancelled_and_says_so(incident_id):
    running = running_handler(incident_id)
    interventions.drain_incident(incident_id, seconds=600, reason="enough", by="test")
    with pytest.raises(Deferred):
        deliver_cleanup(incident_id)
    MessageLog.objects.filter(pk=running.pk).update(  # the handler finishes
        status=MessageStatus.COMPLETE, completed=timezone.now())
    assert deliver_cleanup(incident_id) is Result.COMPLETE
    incident = Incident.objects.get(pk=incident_id)
    assert incident.status == IncidentStatus.CANCELLED and incident.cleaned_at is not None
    assert re.fullmatch(r"enough; drained in time: the last handler finished \d+\.\d s after "
                        r"the cancel, within the 600 s allowed", incident.comment)


def test_a_plain_cancel_is_unchanged_by_drains(incident_id):
    running = running_handler(incident_id)
    workflow.Cancel(incident_id, reason="plain")
    workflow.FlushMessages()
    with pytest.raises(Deferred):
        deliver_cleanup(incident_id)
    MessageLog.objects.filter(pk=running.pk).update(status=MessageStatus.COMPLETE)
    assert deliver_cleanup(incident_id) is Result.COMPLETE
    incident = Incident.objects.get(pk=incident_id)
    assert (incident.status, incident.comment) == (IncidentStatus.CANCELLED, "plain")


def test_a_drain_of_an_ended_incident_changes_nothing(incident_id):
    workflow.Complete(incident_id)
    workflow.FlushMessages()
    report = interventions.drain_incident(incident_id, seconds=5, by="test")
    assert (report.started, report.status) == (False, IncidentStatus.COMPLETE)
    assert audit.history(incident_id) == []
    out = StringIO()
    call_command("cancel_incident", incident_id, "--kill-after", "5", stdout=out)
    assert "had already ended (COMPLETE); not drained" in out.getvalue()


@pytest.mark.parametrize("seconds", [0, 3601, 2.5, "30", True])
def test_the_drain_window_is_a_whole_number_of_seconds_from_1_to_3600(incident_id, seconds):
    with pytest.raises(MessageError, match="from 1 to 3600"):
        interventions.drain_incident(incident_id, seconds=seconds)
    assert Incident.objects.get(pk=incident_id).status == IncidentStatus.PENDING


def test_the_command_refuses_a_bad_window_and_no_wait_alone(incident_id):
    with pytest.raises(CommandError, match="from 1 to 3600, not '0'"):
        call_command("cancel_incident", incident_id, "--kill-after", "0")
    with pytest.raises(CommandError, match="--no-wait goes with --kill-after"):
        call_command("cancel_incident", incident_id, "--no-wait")
    out = StringIO()
    call_command("cancel_incident", incident_id[:8], "--kill-after", "30", "--no-wait", stdout=out)
    assert out.getvalue() == (f"draining {incident_id}: cancelled; what still runs after 30 s is "
                              "killed\n")
    assert audit.history(incident_id)[0].details["kill_after"] == 30


def test_the_console_shows_draining_with_a_countdown_in_the_page_the_list_and_live_json(
        incident_id):
    client = staff("root", "view_incident", "cancel_incident", "kill_incident")
    running_handler(incident_id)
    interventions.drain_incident(incident_id, seconds=60, by="test")
    page = client.get(reverse("admin:incidents_incident_change", args=[incident_id])).content.decode()
    left = int(re.search(r'id="wf-drain-left">(\d+)<', page).group(1))
    assert 50 <= left <= 60 and '<div id="wf-drain" class="module">' in page
    assert re.search(r'class="wf-status wf-draining" data-live="yes"[^>]*>DRAINING \d+ s<', page)
    state = client.get(reverse("admin:incidents_incident_live", args=[incident_id])).json()
    assert state["status"] == "CANCELLED" and state["drain"]["seconds"] == 60
    assert 50 <= state["drain"]["seconds_left"] <= 60
    listed = client.get(reverse("admin:incidents_incident_changelist")).content.decode()
    assert re.search(r'data-live="yes"[^>]*>DRAINING \d+ s<', listed)
    assert 'id="wf-drain-button"' not in page  # it has ended: nothing left to drain


def test_draining_needs_both_the_cancel_and_the_kill_permission(incident_id):
    url = reverse("admin:incidents_incident_drain", args=[incident_id])
    page = reverse("admin:incidents_incident_change", args=[incident_id])
    for codename in ("cancel_incident", "kill_incident"):
        client = staff(f"only-{codename}", "view_incident", codename)
        assert 'id="wf-drain-button"' not in client.get(page).content.decode()
        assert client.post(url, {"confirmed": "yes", "seconds": "30"}).status_code == 403
    assert Incident.objects.get(pk=incident_id).status == IncidentStatus.PENDING

    both = staff("both", "view_incident", "cancel_incident", "kill_incident")
    assert 'id="wf-drain-button"' in both.get(page).content.decode()
    asked = both.get(url).content.decode()
    assert 'name="seconds" value="30"' in asked and "Yes, drain, then kill" in asked
    too_long = both.post(url, {"confirmed": "yes", "seconds": "3601"})
    assert too_long.status_code == 200 and "less than or equal to 3600" in too_long.content.decode()
    response = both.post(url, {"confirmed": "yes", "seconds": "45", "reason": "from the page"})
    assert response.status_code == 302 and response["Location"] == page
    [action] = audit.history(incident_id)
    assert (action.action, action.by, action.details["kill_after"]) == ("drain", "both (admin)", 45)


@pytest.mark.e2e
def test_a_handler_still_running_at_the_deadline_is_killed_and_its_message_not_processed(
        workers, tmp_path):
    worker = workers.start("d1", concurrency=2)  # one process for the handler, one for the cleanup
    incident_id = start_blocked_incident(tmp_path, "drained too long")
    out = StringIO()
    call_command("cancel_incident", incident_id, "--kill-after", "2", "--reason", "taking too long",
                 stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[0] == f"draining {incident_id}: cancelled; what still runs after 2 s is killed"
    assert re.fullmatch(r"  \d s left; 1 message\(s\) in flight", lines[1])
    assert lines[-1] == (f"{incident_id} KILLED: taking too long; drained for 2 s; killed 1 "
                         "running handler(s)")
    incident = Incident.objects.get(pk=incident_id)
    assert incident.status == IncidentStatus.KILLED and incident.cleaned_at is not None
    blocked = MessageLog.objects.get(incident_id=incident_id, destination="probe_block")
    assert blocked.status == MessageStatus.NOT_PROCESSED and "then killed" in blocked.comment
    wait_until(lambda: "Terminating" in worker.log_text() or "revoked" in worker.log_text(),
               what="the worker to terminate the running handler")
    (tmp_path / "release").touch()  # had the handler survived, it would now send on
    assert not MessageLog.objects.filter(incident_id=incident_id, destination="probe_count").exists()


@pytest.mark.e2e
def test_a_handler_that_finishes_within_the_window_commits_and_the_incident_stays_cancelled(
        workers, tmp_path):
    workers.start("d1", concurrency=2)
    incident_id = start_blocked_incident(tmp_path, "drained in time")
    interventions.drain_incident(incident_id, seconds=600, by="test")
    client = staff("root", "view_incident", "cancel_incident", "kill_incident")
    state = client.get(reverse("admin:incidents_incident_live", args=[incident_id])).json()
    assert state["drain"]["seconds_left"] > 500  # DRAINING while the handler runs on
    (tmp_path / "release").touch()
    incident = wait_until(lambda: ended(incident_id), what="the drain's cleanup")
    assert incident.status == IncidentStatus.CANCELLED
    assert "drained in time" in incident.comment and "600 s allowed" in incident.comment
    blocked = MessageLog.objects.get(incident_id=incident_id, destination="probe_block")
    assert blocked.status == MessageStatus.COMPLETE  # it finished and committed
    sent_on = MessageLog.objects.get(incident_id=incident_id, destination="probe_count")
    assert sent_on.status == MessageStatus.NOT_PROCESSED  # nothing new starts after a cancel
    assert client.get(reverse("admin:incidents_incident_live", args=[incident_id])).json()[
        "drain"] is None


@pytest.mark.e2e
def test_the_kill_comes_even_when_the_handlers_to_kill_hold_every_worker_process(workers, tmp_path):
    # The only pool process runs the blocked handler, so no process is free to take the
    # drain's cleanup message: the worker's relay thread does the kill instead.
    workers.start("d1", concurrency=1)
    incident_id = start_blocked_incident(tmp_path, "holds the only process")
    interventions.drain_incident(incident_id, seconds=1, by="test")
    incident = wait_until(lambda: ended(incident_id), what="the overdue drain to be killed")
    assert (incident.status, incident.comment) == (
        IncidentStatus.KILLED, "drained for 1 s; killed 1 running handler(s)")
    (tmp_path / "release").touch()
    assert not MessageLog.objects.filter(incident_id=incident_id, destination="probe_count").exists()
