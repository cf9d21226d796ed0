"""Resuming a failed incident after a fix: what its cleanup keeps, Resume (engine, command,
admin) and its refusals. The workflow: tests/workflows/resumable.py, whose step fails while a
flag file exists (the bug) and succeeds once the test removes it (the fix)."""
from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse
from django.utils import timezone

from incidents import conf, workflow
from incidents.engine import audit, dispatch, locks, operations, registry, resume, scratch
from incidents.engine.runs import Result
from incidents.exceptions import NotResumable
from incidents.models import HandlerState, Incident, IncidentStatus, MessageLog, MessageStatus
from incidents.processes import WorkerGroup, worker_env
from incidents.testing import run_until_idle
from tests.workflows import resumable

from .conftest import TEST_MODULES, ended, staff, wait_until

registry.load_workflow_modules(["tests.workflows.resumable"])

pytestmark = pytest.mark.usefixtures("transactional_db", "broker")


@pytest.fixture
def bug(tmp_path) -> Path:
    """The flag file: while it exists, resumable_step fails."""
    flag = tmp_path / "bug"
    flag.write_text("present")
    return flag


def start(flag: Path, name: str = "resumable") -> str:
    return operations.start_incident(kind="TEST", name=name, queue="resumable_start",
                                     message={"flag": str(flag)})


def failed_and_cleaned(flag: Path, name: str = "resumable") -> str:
    """An incident run in this process until its step failed and its cleanup ran."""
    incident_id = start(flag, name)
    run_until_idle(raise_on_error=False)
    incident = Incident.objects.get(pk=incident_id)
    assert incident.status == IncidentStatus.ERROR and incident.cleaned_at, incident.comment
    return incident_id


def step_row(incident_id: str) -> MessageLog:
    return MessageLog.objects.get(incident_id=incident_id, destination="resumable_step")


def result_of(incident_id: str) -> dict:
    with workflow.OpenResult(incident_id, resumable.RESULT) as f:
        return json.loads(f.read())


def refusal(incident_id: str) -> str:
    with pytest.raises(NotResumable) as refused:
        resume.resume_incident(incident_id, by="tester")
    assert not [a for a in audit.history(incident_id) if a.action == "resume"]
    return str(refused.value)


# What a failed incident keeps


def test_the_cleanup_of_a_failed_incident_keeps_its_state_and_scratch_but_not_its_locks(bug):
    incident_id = start(bug)
    assert locks.backend().acquire("left-by-a-run", incident_id, "holder", 60)
    run_until_idle(raise_on_error=False)
    incident = Incident.objects.get(pk=incident_id)
    assert incident.status == IncidentStatus.ERROR and incident.cleaned_at is not None
    assert "resumable_step failed" in incident.comment and "the bug" in incident.comment
    assert sorted(json.loads(s.data)["part"]
                  for s in HandlerState.objects.filter(incident_id=incident_id)) == [20, 22]
    assert sorted(p.name for p in (scratch.root() / incident_id).iterdir()) == [
        "part-20.txt", "part-22.txt"]
    assert locks.backend().clear(incident_id) == 0  # the cleanup released them
    row = step_row(incident_id)
    assert (row.status, row.attempts) == (MessageStatus.ERROR, 1)
    assert "RuntimeError: resumable_step: the bug" in row.comment


def test_a_completed_incident_is_still_cleaned_up_whole(tmp_path):
    incident_id = start(tmp_path / "no-bug")
    run_until_idle()
    assert Incident.objects.get(pk=incident_id).status == IncidentStatus.COMPLETE
    assert not HandlerState.objects.filter(incident_id=incident_id).exists()
    assert not (scratch.root() / incident_id).exists()


# Resume


def test_resume_after_the_fix_runs_the_rest_of_the_graph_once_with_the_kept_state(bug):
    incident_id = failed_and_cleaned(bug)
    failed = step_row(incident_id)
    bug.unlink()  # the fix

    report = resume.resume_incident(incident_id, reason="fixed the step", by="tester")
    assert (report.failed, report.refused) == ([str(failed.pk)], 0)
    incident = Incident.objects.get(pk=incident_id)
    assert (incident.status, incident.completed_at, incident.cleaned_at, incident.comment,
            incident.ended_by) == (IncidentStatus.ACTIVE, None, None, "", "")
    row = step_row(incident_id)
    assert (row.status, row.attempts, row.comment) == (
        MessageStatus.SENT, 1, "resumed by tester: fixed the step")  # published again

    run_until_idle()
    incident = Incident.objects.get(pk=incident_id)
    assert incident.status == IncidentStatus.COMPLETE and incident.cleaned_at is not None
    assert result_of(incident_id) == {"parts": [20, 22], "files": [20, 22], "sum": 42}
    row = step_row(incident_id)
    assert (row.status, row.attempts, row.comment) == (MessageStatus.COMPLETE, 2, "")
    assert MessageLog.objects.filter(incident_id=incident_id, destination="resumable_finish",
                                     status=MessageStatus.COMPLETE).count() == 1
    # Complete's cleanup removes everything, as for any completed incident.
    assert not HandlerState.objects.filter(incident_id=incident_id).exists()
    assert not (scratch.root() / incident_id).exists()
    # A late copy of the resumed message is a duplicate, dropped as any other.
    assert dispatch.deliver("resumable_step", row.body).result is Result.DUPLICATE

    record = audit.history(incident_id)[0]
    assert (record.action, record.by, record.reason) == ("resume", "tester", "fixed the step")
    assert record.details["status_before"] == IncidentStatus.ERROR
    assert "resumable_step failed" in record.details["failure"]
    assert record.details["failed"] == [{
        "id": str(failed.pk), "queue": "resumable_step", "attempts": 1,
        "error": f"RuntimeError: resumable_step: the bug ({bug} exists)"}]
    assert (record.details["refused"], record.details["refused_count"]) == ([], 0)


def test_messages_refused_while_it_had_failed_are_queued_again(bug, incident_id):
    for queue in ("resumable_step", "resumable_side"):
        workflow.send(message={"IncidentID": incident_id, "flag": str(bug)}, queue=queue)
    workflow.FlushMessages()
    body = {row.destination: row.body for row in MessageLog.objects.filter(incident_id=incident_id)}
    assert dispatch.deliver("resumable_step", body["resumable_step"]).result is Result.ERROR
    assert dispatch.deliver("resumable_side", body["resumable_side"]).result is Result.NOT_PROCESSED
    run_until_idle(raise_on_error=False)  # the broker's copies are duplicates; the cleanup runs
    side = MessageLog.objects.get(incident_id=incident_id, destination="resumable_side")
    assert side.status == MessageStatus.NOT_PROCESSED
    bug.unlink()

    report = resume.resume_incident(incident_id, by="tester")
    assert report.refused == 1 and len(report.failed) == 1
    assert audit.history(incident_id)[0].details["refused"] == [str(side.pk)]
    run_until_idle()
    assert Incident.objects.get(pk=incident_id).status == IncidentStatus.COMPLETE
    side.refresh_from_db()
    assert (side.status, side.attempts) == (MessageStatus.COMPLETE, 1)
    assert step_row(incident_id).attempts == 2


def test_resumed_on_the_old_code_it_fails_again_and_can_be_resumed_again(bug):
    incident_id = failed_and_cleaned(bug)
    resume.resume_incident(incident_id, by="too early")
    run_until_idle(raise_on_error=False)
    incident = Incident.objects.get(pk=incident_id)
    assert incident.status == IncidentStatus.ERROR and incident.cleaned_at is not None
    assert (step_row(incident_id).status, step_row(incident_id).attempts) == (
        MessageStatus.ERROR, 2)
    assert HandlerState.objects.filter(incident_id=incident_id).count() == 2  # kept again

    bug.unlink()
    resume.resume_incident(incident_id, by="after the fix")
    run_until_idle()
    assert Incident.objects.get(pk=incident_id).status == IncidentStatus.COMPLETE
    assert step_row(incident_id).attempts == 3
    assert [a.by for a in audit.history(incident_id)] == ["after the fix", "too early"]


def test_a_message_that_used_up_its_attempts_gets_one_more(bug):
    incident_id = failed_and_cleaned(bug)
    limit = conf.get("MAX_ATTEMPTS")
    MessageLog.objects.filter(pk=step_row(incident_id).pk).update(attempts=limit)
    bug.unlink()
    resume.resume_incident(incident_id, by="tester")
    assert step_row(incident_id).attempts == limit - 1
    run_until_idle()
    assert Incident.objects.get(pk=incident_id).status == IncidentStatus.COMPLETE
    assert (step_row(incident_id).status, step_row(incident_id).attempts) == (
        MessageStatus.COMPLETE, limit)
    assert audit.history(incident_id)[0].details["failed"][0]["attempts"] == limit


# Refusals


def test_live_and_not_failed_incidents_are_refused_with_the_reason(incident_id, tmp_path):
    assert "it is PENDING: it has not failed" in refusal(incident_id)
    completed = start(tmp_path / "no-bug", "completes")
    run_until_idle()
    assert "it ended COMPLETE, not ERROR" in refusal(completed)
    cancelled = workflow.CreateIncident(name="cancelled", kind="TEST")
    operations.cancel_incident(cancelled, by="tester")
    assert "it ended CANCELLED, not ERROR" in refusal(cancelled)
    killed = workflow.CreateIncident(name="killed", kind="TEST")
    operations.kill_incident(killed, by="tester")
    assert "it ended KILLED, not ERROR" in refusal(killed)
    assert Incident.objects.get(pk=killed).status == IncidentStatus.KILLED  # untouched


def test_a_failed_incident_is_refused_until_its_cleanup_has_run(bug, incident_id):
    workflow.send(message={"IncidentID": incident_id, "flag": str(bug)}, queue="resumable_step")
    workflow.FlushMessages()
    row = MessageLog.objects.get(incident_id=incident_id)
    assert dispatch.deliver("resumable_step", row.body).result is Result.ERROR
    assert "its cleanup has not run yet" in refusal(incident_id)
    run_until_idle(raise_on_error=False)
    resume.resume_incident(incident_id, by="tester")  # now it can


@pytest.mark.parametrize("verb", ["kill", "cancel"])
def test_a_kill_or_cancel_of_a_failed_incident_removes_what_it_kept(bug, verb):
    incident_id = failed_and_cleaned(bug)
    if verb == "kill":
        assert not operations.kill_incident(incident_id, by="tester").killed
    else:
        assert not operations.cancel_incident(incident_id, by="tester")
    run_until_idle()  # the forced cleanup
    assert Incident.objects.get(pk=incident_id).status == IncidentStatus.ERROR  # as it ended
    assert not HandlerState.objects.filter(incident_id=incident_id).exists()
    assert not (scratch.root() / incident_id).exists()
    done = {"kill": "killed", "cancel": "cancelled"}[verb]
    assert f"it was {done} by tester at " in refusal(incident_id)
    assert "after it failed, which removed its state" in refusal(incident_id)


def test_after_the_retention_it_is_refused_and_a_later_cleanup_removes_its_state(
        bug, settings, tmp_path):
    settings.WORKFLOW_RESUME_RETENTION_HOURS = 2
    expired = failed_and_cleaned(bug, "expired")
    recent = failed_and_cleaned(bug, "recent")
    Incident.objects.filter(pk=expired).update(
        completed_at=timezone.now() - timedelta(hours=3))
    assert "its state was removed after 2 hours (WORKFLOW_RESUME_RETENTION_HOURS)" in refusal(expired)

    start(tmp_path / "no-bug", "another incident's cleanup")
    run_until_idle()
    assert not HandlerState.objects.filter(incident_id=expired).exists()
    assert not (scratch.root() / expired).exists()
    assert HandlerState.objects.filter(incident_id=recent).count() == 2  # still resumable
    assert (scratch.root() / recent).is_dir()
    bug.unlink()
    resume.resume_incident(recent, by="tester")


def test_with_no_retention_a_failed_incident_keeps_nothing(bug, settings):
    settings.WORKFLOW_RESUME_RETENTION_HOURS = 0
    incident_id = failed_and_cleaned(bug)
    assert not HandlerState.objects.filter(incident_id=incident_id).exists()
    assert not (scratch.root() / incident_id).exists()
    assert "WORKFLOW_RESUME_RETENTION_HOURS=0" in refusal(incident_id)


# The command


def test_the_command_resumes_by_id_prefix_and_says_what_it_did(bug):
    incident_id = failed_and_cleaned(bug)
    bug.unlink()
    out = StringIO()
    call_command("resume_incident", incident_id[:8], "--reason", "patched", stdout=out)
    assert out.getvalue().strip() == (f"resumed {incident_id}: 1 failed message(s) delivered "
                                      "again, 0 refused message(s) queued again")
    record = audit.history(incident_id)[0]
    assert record.by.endswith("(command line)") and record.reason == "patched"
    run_until_idle()
    assert Incident.objects.get(pk=incident_id).status == IncidentStatus.COMPLETE


def test_the_command_refuses_with_the_reason(incident_id):
    with pytest.raises(CommandError, match="cannot be resumed: it is PENDING"):
        call_command("resume_incident", incident_id, stdout=StringIO())
    with pytest.raises(CommandError, match="no incident's id starts with"):
        call_command("resume_incident", "00000000", stdout=StringIO())


# The admin


def test_without_the_permission_there_is_no_button_and_a_crafted_post_is_refused(bug):
    incident_id = failed_and_cleaned(bug)
    viewer = staff("viewer", "view_incident")
    page = viewer.get(reverse("admin:incidents_incident_change", args=[incident_id]))
    assert page.status_code == 200 and b'id="wf-resume"' not in page.content
    url = reverse("admin:incidents_incident_resume", args=[incident_id])
    assert viewer.get(url).status_code == 403
    assert viewer.post(url, {"confirmed": "yes", "reason": "crafted"}).status_code == 403
    assert Incident.objects.get(pk=incident_id).status == IncidentStatus.ERROR


def test_the_admin_shows_what_a_resume_does_then_resumes_and_records_who(bug):
    incident_id = failed_and_cleaned(bug)
    operator = staff("resumer", "view_incident", "resume_incident")
    page = operator.get(reverse("admin:incidents_incident_change", args=[incident_id]))
    assert b'id="wf-resume"' in page.content
    url = reverse("admin:incidents_incident_resume", args=[incident_id])
    confirm = operator.get(url).content.decode()
    assert 'id="wf-resume-count">1 failed message(s)</strong>' in confirm
    assert "resumable_step" in confirm and "RuntimeError: resumable_step: the bug" in confirm
    bug.unlink()
    response = operator.post(url, {"confirmed": "yes", "reason": "fixed in the console"})
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:incidents_incident_change", args=[incident_id])
    record = audit.history(incident_id)[0]
    assert (record.action, record.by, record.reason) == (
        "resume", "resumer (admin)", "fixed in the console")
    run_until_idle()
    assert Incident.objects.get(pk=incident_id).status == IncidentStatus.COMPLETE
    # Once complete: no button, and the page says why it cannot be resumed.
    page = operator.get(reverse("admin:incidents_incident_change", args=[incident_id]))
    assert b'id="wf-resume"' not in page.content
    actions = page.content.decode().split('id="wf-actions"')[1].split("</table>")[0]
    assert "resumer (admin)" in actions and "fixed in the console" in actions  # who, why
    refused = operator.get(url).content.decode()
    assert "It cannot be resumed: it ended COMPLETE, not ERROR" in refused
    assert 'id="wf-confirm"' not in refused


# On workers


@pytest.fixture
def resume_workers(transactional_db, broker):
    modules = f"{TEST_MODULES},tests.workflows.resumable"
    with WorkerGroup(env=worker_env({"WORKFLOW_MODULES": modules})) as group:
        yield group


@pytest.mark.e2e
def test_on_workers_a_failed_incident_resumed_after_the_fix_completes(resume_workers, bug):
    resume_workers.start("resume1", concurrency=2)
    incident_id = start(bug)
    incident = wait_until(lambda: ended(incident_id), what="the step to fail and the cleanup")
    assert incident.status == IncidentStatus.ERROR, incident.comment
    assert HandlerState.objects.filter(incident_id=incident_id).count() == 2
    assert (scratch.root() / incident_id).is_dir()
    bug.unlink()

    resume.resume_incident(incident_id, reason="fixed", by="tester")
    incident = wait_until(lambda: Incident.objects.get(pk=incident_id).cleaned_at
                          and Incident.objects.get(pk=incident_id),
                          what="the resumed incident to complete and be cleaned up")
    assert incident.status == IncidentStatus.COMPLETE, incident.comment
    assert result_of(incident_id) == {"parts": [20, 22], "files": [20, 22], "sum": 42}
    row = step_row(incident_id)
    assert (row.status, row.attempts) == (MessageStatus.COMPLETE, 2)
    assert MessageLog.objects.filter(incident_id=incident_id, destination="resumable_finish",
                                     status=MessageStatus.COMPLETE).count() == 1
    assert not MessageLog.objects.filter(incident_id=incident_id).exclude(
        status=MessageStatus.COMPLETE).exists()
