"""Result files (workflow.AttachResult): stored with the handler's commit, kept after the
incident's cleanup until retention, served by the admin behind the view permission."""
from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission, User
from django.core.files.storage import FileSystemStorage
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, OperationalError
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from incidents import workflow
from incidents.engine import dispatch, persist, registry, result_files, scratch
from incidents.engine.runs import Result
from incidents.exceptions import MessageError, MessageTypeError, WorkflowConfigError
from incidents.models import Incident, IncidentStatus, ResultFile
from incidents.processes import WorkerGroup, worker_env
from incidents.testing import run_until_idle
from tests.workflows import attach

from .conftest import TEST_MODULES, ended, wait_until

registry.load_workflow_modules(["tests.workflows.attach"])


@pytest.fixture
def storage(monkeypatch, tmp_path) -> FileSystemStorage:
    """A results storage of this test's own (in this process; workers use var/results)."""
    store = FileSystemStorage(location=tmp_path / "results")
    monkeypatch.setattr(ResultFile._meta.get_field("file"), "storage", store)
    return store


def stored_files(store: FileSystemStorage) -> list[str]:
    root = Path(store.location)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def read(incident_id: str, name: str) -> bytes:
    with workflow.OpenResult(incident_id, name) as f:
        return f.read()


def end(incident_id: str) -> None:
    Incident.objects.filter(pk=incident_id).update(status=IncidentStatus.COMPLETE)


# Attaching


@workflow.handler
def attaching_handler(message):
    workflow.AttachResult(message["IncidentID"], "notes.txt", "first line\n", title="notes")
    # Staged, not stored: nothing shows before the handler has returned.
    assert not ResultFile.objects.filter(incident_id=message["IncidentID"]).exists()


@workflow.handler
def attaching_then_failing_handler(message):
    workflow.AttachResult(message["IncidentID"], "notes.txt", "never kept")
    raise RuntimeError("after attaching")


def test_a_result_attached_by_a_handler_is_stored_when_the_handler_returns(incident_id, storage):
    attaching_handler({"IncidentID": incident_id})
    row = ResultFile.objects.get(incident_id=incident_id)
    assert (row.name, row.title, row.content_type, row.size, row.handler) == (
        "notes.txt", "notes", "text/plain", 11, "attaching_handler")
    assert read(incident_id, "notes.txt") == b"first line\n"
    assert stored_files(storage) == [row.file.name]


def test_a_handler_that_attaches_then_raises_leaves_no_result_and_no_file(incident_id, storage):
    with pytest.raises(RuntimeError, match="after attaching"):
        attaching_then_failing_handler({"IncidentID": incident_id})
    assert not ResultFile.objects.exists()
    assert stored_files(storage) == []
    with pytest.raises(LookupError, match=r"has no result file 'notes\.txt'; it has none"):
        workflow.OpenResult(incident_id, "notes.txt")


def test_outside_a_handler_a_result_is_stored_at_once_and_a_name_attached_again_replaces_it(
        incident_id, storage, tmp_path):
    source = tmp_path / "map.png"
    source.write_bytes(attach.PIXEL_PNG)
    assert workflow.AttachResult(incident_id, source, title="first") == "map.png"
    first = ResultFile.objects.get(incident_id=incident_id)
    assert (first.content_type, first.size, first.handler) == ("image/png", len(attach.PIXEL_PNG), "")
    source.write_bytes(b"changed after attaching")  # the result is a snapshot
    assert read(incident_id, "map.png") == attach.PIXEL_PNG

    workflow.AttachResult(incident_id, "map.png", b"second", content_type="image/png", title="2")
    second = ResultFile.objects.get(incident_id=incident_id)
    assert (second.pk, second.title, read(incident_id, "map.png")) == (first.pk, "2", b"second")
    assert stored_files(storage) == [second.file.name]  # the first file went with it


@pytest.mark.parametrize("name, data, error, message", [
    ("../../etc/passwd", b"x", MessageError, "is not a plain file name"),
    ("maps/pass-1.png", b"x", MessageError, "is not a plain file name"),
    (".hidden", b"x", MessageError, "starting with a letter or digit"),
    ("", b"x", MessageTypeError, "must be a non-empty string"),
    ("n.bin", 42, MessageTypeError, "data is a int; give bytes or str"),
    ("/no/such/file.png", None, MessageError, "no file at '/no/such/file.png'"),
])
def test_a_bad_attachment_is_refused_with_what_to_fix(incident_id, storage, name, data, error,
                                                      message):
    with pytest.raises(error, match=message):
        workflow.AttachResult(incident_id, name, data)
    assert stored_files(storage) == []


def test_a_bad_content_type_is_refused_and_an_unknown_incident_is_named(incident_id, storage):
    with pytest.raises(MessageError, match="content_type 'png' is not a MIME type"):
        workflow.AttachResult(incident_id, "a.png", b"x", content_type="png")
    with pytest.raises(LookupError, match="no incident has IncidentID"):
        workflow.AttachResult("0b7e3e4c-3b89-4bd5-a7c4-9d1f1f0e2a11", "a.txt", b"x")


@pytest.mark.usefixtures("broker")
def test_a_rerun_after_a_rolled_back_commit_overwrites_the_same_file(incident_id, storage,
                                                                     monkeypatch):
    message = {"IncidentID": incident_id}
    workflow.send(message=message, queue="attach_probe")
    workflow.FlushMessages()
    insert_staged = persist.insert_staged

    def database_gone_once(run):
        monkeypatch.setattr(persist, "insert_staged", insert_staged)
        raise OperationalError("the database went away mid-commit (test)")

    monkeypatch.setattr(persist, "insert_staged", database_gone_once)
    with pytest.raises(OperationalError):  # after the commit's file writes: rolled back
        dispatch.deliver("attach_probe", message)
    written = stored_files(storage)
    assert len(written) == 2 and not ResultFile.objects.exists()

    assert dispatch.deliver("attach_probe", message).result is Result.COMPLETE  # the rerun
    assert stored_files(storage) == written  # the same two files, not two more
    assert sorted(ResultFile.objects.values_list("file", flat=True)) == written
    assert read(incident_id, "report.csv") == attach.REPORT.encode()


@pytest.mark.usefixtures("broker")
def test_a_commit_the_database_refuses_leaves_a_file_that_prune_results_removes(
        incident_id, storage, monkeypatch):
    workflow.send(message={"IncidentID": incident_id}, queue="attach_probe")
    workflow.FlushMessages()

    def refused(run):
        raise DatabaseError("value refused by the database (test)")

    monkeypatch.setattr(persist, "insert_staged", refused)
    run_until_idle(raise_on_error=False)
    assert Incident.objects.get(pk=incident_id).status == IncidentStatus.ERROR
    orphans = stored_files(storage)
    assert len(orphans) == 2 and not ResultFile.objects.exists()

    assert result_files.prune().orphans == []  # younger than ORPHAN_GRACE: maybe mid-commit
    later = timezone.now() + result_files.ORPHAN_GRACE + timedelta(minutes=1)
    assert result_files.prune(now=later).orphans == orphans
    assert stored_files(storage) == [] and not any(Path(storage.location).iterdir())


# Retention


def attached_days_ago(incident_id: str, name: str, days: float) -> ResultFile:
    workflow.AttachResult(incident_id, name, name.encode())
    ResultFile.objects.filter(incident_id=incident_id, name=name).update(
        created=timezone.now() - timedelta(days=days))
    return ResultFile.objects.get(incident_id=incident_id, name=name)


def test_prune_results_deletes_results_of_ended_incidents_past_retention(incident_id, storage):
    live = workflow.CreateIncident(name="still running", kind="TEST")
    old = attached_days_ago(incident_id, "old.txt", 31)
    attached_days_ago(incident_id, "recent.txt", 29)
    attached_days_ago(live, "old-but-live.txt", 90)
    end(incident_id)

    out = _call("prune_results", "--dry-run")
    assert "would delete 1 result files past retention (30 days)" in out and old.file.name in out
    assert ResultFile.objects.count() == 3

    out = _call("prune_results")
    assert "deleted 1 result files past retention (30 days) and 0 orphaned files" in out
    assert sorted(ResultFile.objects.values_list("name", flat=True)) == ["old-but-live.txt",
                                                                         "recent.txt"]
    assert old.file.name not in stored_files(storage)


def test_retention_zero_keeps_results_for_ever(incident_id, storage, monkeypatch):
    monkeypatch.setenv("WORKFLOW_RESULTS_RETENTION_DAYS", "0")
    attached_days_ago(incident_id, "ancient.txt", 3650)
    end(incident_id)
    assert "deleted 0 result files past retention (kept for ever (0))" in _call("prune_results")
    assert ResultFile.objects.count() == 1


@pytest.mark.parametrize("value, message", [
    ("-1", "WORKFLOW_RESULTS_RETENTION_DAYS=-1 is not a number of days >= 0; set it like "
           "WORKFLOW_RESULTS_RETENTION_DAYS=30"),
    ("thirty", "WORKFLOW_RESULTS_RETENTION_DAYS='thirty' is not a float"),
    ("nan", "WORKFLOW_RESULTS_RETENTION_DAYS=nan is not a number of days >= 0"),
])
def test_a_bad_retention_setting_is_a_clear_error(transactional_db, monkeypatch, value, message):
    monkeypatch.setenv("WORKFLOW_RESULTS_RETENTION_DAYS", value)
    with pytest.raises(CommandError, match=re.escape(message)):
        call_command("prune_results")
    with pytest.raises(WorkflowConfigError):
        result_files.retention_days()


@pytest.mark.usefixtures("broker")
def test_an_incidents_cleanup_also_deletes_expired_results(incident_id, storage):
    expired = attached_days_ago(incident_id, "expired.txt", 45)
    end(incident_id)
    other = workflow.CreateIncident(name="later incident", kind="TEST")
    workflow.send(message={"IncidentID": other, "left": 0}, queue="probe_chain")
    workflow.FlushMessages()
    run_until_idle()
    assert ended(other) is not None
    assert not ResultFile.objects.filter(pk=expired.pk).exists()
    assert expired.file.name not in stored_files(storage)


def _call(*args: str) -> str:
    from io import StringIO

    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


# The admin


def client_with(*codenames: str) -> Client:
    user = User.objects.create_user("-".join(codenames) or "nobody", password="pw-tests-only",
                                    is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client


def result_url(row: ResultFile) -> str:
    return reverse("admin:incidents_incident_result", args=[row.incident_id, row.pk])


def test_the_incident_page_shows_images_inline_and_other_files_as_downloads(incident_id, storage):
    workflow.AttachResult(incident_id, "map.png", attach.PIXEL_PNG, title="the map")
    workflow.AttachResult(incident_id, "report.csv", attach.REPORT)
    image, report = (ResultFile.objects.get(name=n) for n in ("map.png", "report.csv"))
    viewer = client_with("view_incident")
    html = viewer.get(reverse("admin:incidents_incident_change", args=[incident_id])).content.decode()
    assert f'<img src="{result_url(image)}" alt="the map"' in html
    assert f'href="{result_url(report)}" download="report.csv"' in html

    shown = viewer.get(result_url(image))
    assert shown.status_code == 200 and b"".join(shown.streaming_content) == attach.PIXEL_PNG
    assert shown["Content-Type"] == "image/png"
    assert shown["Content-Disposition"] == 'inline; filename="map.png"'
    assert "sandbox" in shown["Content-Security-Policy"]
    downloaded = viewer.get(result_url(report))
    assert b"".join(downloaded.streaming_content) == attach.REPORT.encode()
    assert downloaded["Content-Type"] == "text/csv"
    assert downloaded["Content-Disposition"] == 'attachment; filename="report.csv"'


def test_results_are_served_only_with_the_view_permission_and_only_by_their_id(incident_id, storage):
    workflow.AttachResult(incident_id, "report.csv", attach.REPORT)
    row = ResultFile.objects.get()
    assert client_with("add_incident").get(result_url(row)).status_code == 403
    assert Client().get(result_url(row)).status_code == 302  # to the login page
    viewer = client_with("view_incident")
    other = workflow.CreateIncident(name="other", kind="TEST")
    wrong_incident = reverse("admin:incidents_incident_result", args=[other, row.pk])
    assert viewer.get(wrong_incident).status_code == 404
    base = reverse("admin:incidents_incident_change", args=[incident_id]).rsplit("change/", 1)[0]
    for attempt in ("results/..%2F..%2F..%2Fwfproject%2Fsettings.py/", f"results/{row.pk}/../../",
                    f"results/{row.file.name}/"):
        response = viewer.get(base + attempt, follow=True)  # the admin redirects odd ids
        assert response.status_code == 404 and b"SECRET" not in response.content, attempt
    os.remove(storage.path(row.file.name))
    assert viewer.get(result_url(row)).status_code == 404  # the file went missing


# On worker processes


@pytest.fixture
def attach_workers(transactional_db, broker):
    modules = f"{TEST_MODULES},tests.workflows.attach"
    with WorkerGroup(env=worker_env({"WORKFLOW_MODULES": modules})) as group:
        yield group


@pytest.mark.e2e
def test_results_attached_on_a_worker_outlive_the_incidents_cleanup(attach_workers):
    attach_workers.start("attach1")
    done = workflow.CreateIncident(name="attaches", kind="TEST")
    workflow.send(message={"IncidentID": done}, queue="attach_probe")
    failed = workflow.CreateIncident(name="attaches, then fails", kind="TEST")
    workflow.send(message={"IncidentID": failed}, queue="attach_probe_fail")
    workflow.FlushMessages()
    incident = wait_until(lambda: ended(done), what="the attaching incident to be cleaned up")
    assert incident.status == IncidentStatus.COMPLETE
    assert not (scratch.root() / done).exists()  # its scratch directory went with the cleanup
    assert read(done, "pixel.png") == attach.PIXEL_PNG  # the result stayed
    assert read(done, "report.csv") == attach.REPORT.encode()
    assert ResultFile.objects.get(incident_id=done, name="pixel.png").title == "one red pixel"

    broken = wait_until(lambda: ended(failed), what="the failing incident to be cleaned up")
    assert broken.status == IncidentStatus.ERROR and "failing after AttachResult" in broken.comment
    assert not ResultFile.objects.filter(incident_id=failed).exists()
    assert not (Path(result_files.storage().location) / failed).exists()
