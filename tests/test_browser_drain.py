"""Drain, then kill, in headless Chromium: the button on the page of an incident whose handler
blocks, its confirmation (seconds, reason), DRAINING with a countdown the live refresh moves
on, then KILLED once the deadline has passed. Screenshot in var/test-artifacts/."""
from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import User

from incidents.models import Incident, IncidentStatus, MessageLog, MessageStatus

from .conftest import start_blocked_incident
from .test_browser import LAYOUT_PROBLEMS, PASSWORD, admin_url, browser, log_in  # noqa: F401  (fixtures)

pytestmark = pytest.mark.e2e

WINDOW_SECONDS = 6  # long enough to see the countdown move on (the page refreshes every 2 s)


def test_an_operator_drains_a_blocked_incident_and_sees_it_killed_at_the_deadline(
        browser, admin_url, workers, tmp_path):  # noqa: F811
    workers.start("drain1", concurrency=2)  # one process for the handler, one for the cleanup
    User.objects.create_superuser("root", password=PASSWORD)
    incident_id = start_blocked_incident(tmp_path, "blocked in the browser")
    page = log_in(browser, admin_url, "root", width=1366)
    page.goto(f"{admin_url}/admin/incidents/incident/{incident_id}/change/")
    page.click("#wf-inject summary")  # the send-a-message form, opened, fits the window too
    assert page.is_visible("#wf-inject-form") and page.evaluate(LAYOUT_PROBLEMS) == []

    page.click("#wf-drain-button")
    assert page.evaluate(LAYOUT_PROBLEMS) == []
    assert page.input_value("#id_seconds") == "30"  # the default
    page.fill("#id_seconds", str(WINDOW_SECONDS))
    page.fill("#id_reason", "drained from the browser")
    page.click("#wf-confirm")

    page.wait_for_function("document.getElementById('wf-status')?.textContent === 'DRAINING'",
                           timeout=30_000)
    assert page.is_visible("#wf-drain")
    first = int(page.inner_text("#wf-drain-left"))
    assert 0 < first <= WINDOW_SECONDS
    page.screenshot(path=str(artifacts() / "admin-draining.png"), full_page=False)
    page.wait_for_function(f"Number(document.getElementById('wf-drain-left').textContent) < {first}",
                           timeout=30_000)  # the live refresh counts down

    page.wait_for_function("document.getElementById('wf-live')?.dataset.done === 'yes'",
                           timeout=120_000)  # killed, cleaned up, page reloaded
    assert page.inner_text("#wf-status") == "KILLED"
    assert not page.is_visible("#wf-drain")
    incident = Incident.objects.get(pk=incident_id)
    assert (incident.status, incident.ended_by) == (IncidentStatus.KILLED, "root (admin)")
    assert incident.comment == (f"drained from the browser; drained for {WINDOW_SECONDS} s; killed 1 "
                                "running handler(s)")
    assert "killed 1 running handler(s)" in page.content()
    assert MessageLog.objects.get(incident_id=incident_id, destination="probe_block").status == \
        MessageStatus.NOT_PROCESSED
    (tmp_path / "release").touch()  # lets the handler go if it survived; it did not commit


def artifacts() -> Path:
    folder = Path(settings.VAR_DIR) / "test-artifacts"
    folder.mkdir(parents=True, exist_ok=True)
    return folder
