"""Resume in headless Chromium: an operator opens a failed incident, presses Resume after the
fix, confirms, and watches it complete; a user without the permission sees no button and a
crafted POST is refused. A screenshot of the confirmation goes to var/test-artifacts/."""
from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import Permission, User

from incidents.engine import audit
from incidents.models import Incident, IncidentStatus, MessageStatus

from .conftest import ended, wait_until
from .test_browser import PASSWORD, admin_url, browser, log_in  # noqa: F401  (fixtures)
from .test_resume import bug, result_of, resume_workers, start, step_row  # noqa: F401  (fixtures)

pytestmark = pytest.mark.e2e


def test_an_operator_resumes_a_failed_incident_from_its_page(browser, admin_url,  # noqa: F811
                                                             resume_workers, bug):  # noqa: F811
    resume_workers.start("resume-browser", concurrency=2)
    User.objects.create_superuser("root", password=PASSWORD)
    viewer = User.objects.create_user("viewer", password=PASSWORD, is_staff=True)
    viewer.user_permissions.set(Permission.objects.filter(codename="view_incident"))
    incident_id = start(bug, "fails until fixed")
    incident = wait_until(lambda: ended(incident_id), what="the step to fail and the cleanup")
    assert incident.status == IncidentStatus.ERROR, incident.comment
    page_url = f"{admin_url}/admin/incidents/incident/{incident_id}/change/"

    # Without the permission: no button, and a crafted POST is refused.
    viewer_page = log_in(browser, admin_url, "viewer")
    viewer_page.goto(page_url)
    assert viewer_page.inner_text("#wf-status") == "ERROR"
    assert viewer_page.locator("#wf-resume").count() == 0
    token = next(c["value"] for c in viewer_page.context.cookies() if c["name"] == "csrftoken")
    response = viewer_page.request.post(
        f"{admin_url}/admin/incidents/incident/{incident_id}/resume/",
        form={"confirmed": "yes", "reason": "crafted", "csrfmiddlewaretoken": token},
        headers={"Referer": f"{admin_url}/admin/"})
    assert response.status == 403
    assert Incident.objects.get(pk=incident_id).status == IncidentStatus.ERROR

    page = log_in(browser, admin_url, "root")
    page.goto(page_url)
    assert "resumable_part" in page.inner_text("body")  # the kept persisted state is listed
    bug.unlink()  # the fix
    page.click("#wf-resume")
    page.wait_for_selector("#wf-resume-count")
    assert page.inner_text("#wf-resume-count") == "1 failed message(s)"
    assert "RuntimeError: resumable_step: the bug" in page.inner_text("#wf-resume-messages")
    artifacts = Path(settings.VAR_DIR) / "test-artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(artifacts / "admin-resume.png"), full_page=False)
    page.fill("#id_reason", "fixed the step")
    page.click("#wf-confirm")
    page.wait_for_selector("#wf-live")
    assert page.url.rstrip("/").endswith(f"{incident_id}/change")
    page.wait_for_function("document.getElementById('wf-live')?.dataset.done === 'yes'",
                           timeout=120_000)
    assert page.inner_text("#wf-status") == "COMPLETE"

    assert result_of(incident_id)["sum"] == 42
    row = step_row(incident_id)
    assert (row.status, row.attempts) == (MessageStatus.COMPLETE, 2)
    record = audit.history(incident_id)[0]
    assert (record.action, record.by, record.reason) == ("resume", "root (admin)",
                                                         "fixed the step")
