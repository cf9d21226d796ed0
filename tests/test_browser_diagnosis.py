""""Why is it not moving?" in headless Chromium: the button loads the reasons into the
incident page, and a reason's link opens what it names. Screenshots go to var/test-artifacts/."""
from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import User

from incidents import workflow
from incidents.engine import diagnosis, registry

from .test_browser import PASSWORD, admin_url, browser, log_in  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("broker")]
registry.load_workflow_modules(["tests.workflows.stuck"])


def test_the_button_shows_why_an_incident_is_not_moving_and_links_to_it(browser, admin_url):  # noqa: F811
    User.objects.create_superuser("root", password=PASSWORD)
    incident_id = workflow.CreateIncident(name="waits for a worker", kind="TEST")
    waiting = workflow.send(message={"IncidentID": incident_id}, queue="stuck_unconsumed")
    workflow.FlushMessages()  # no worker runs: nobody consumes the queue
    workflow.GetLock("gate", incident_id)
    artifacts = Path(settings.VAR_DIR) / "test-artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)

    page = log_in(browser, admin_url, "root", width=1366)
    page.goto(f"{admin_url}/admin/incidents/incident/{incident_id}/change/")
    assert page.locator("#wf-diagnosis .wf-reason").count() == 0  # computed on demand only
    page.click("#wf-diagnose")
    row = page.locator(f'.wf-reason[data-kind="{diagnosis.QUEUE_WITHOUT_CONSUMER}"]')
    row.wait_for(timeout=30_000)
    assert "1 message(s) wait in queue stuck_unconsumed" in row.inner_text()
    assert page.locator(f'.wf-reason[data-kind="{diagnosis.LOCK_HELD}"]').count() == 1
    assert page.inner_text("#wf-diagnose") == "Check again"
    page.locator("#wf-diagnosis").evaluate("el => el.scrollIntoView({block: 'start'})")
    page.screenshot(path=str(artifacts / "admin-diagnosis-1366.png"), full_page=False)

    row.locator("a.wf-reason-link").click()
    page.wait_for_selector("#result_list")
    assert page.locator("#result_list tbody tr").count() == 1
    assert str(waiting)[:8] in page.inner_text("#result_list")
    workflow.ReleaseLock("gate", incident_id)
