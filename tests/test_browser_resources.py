"""External resources on the incident page, in headless Chromium: a killed incident's failed
release is shown with the "not fully cleaned" warning, and Retry release sends it again.
A screenshot goes to var/test-artifacts/."""
from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import User

from incidents.models import ExternalResource, ResourceStatus

from .test_admin_resources import a_resource, an_incident
from .test_browser import PASSWORD, admin_url, browser, log_in  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("broker")]


def test_an_operator_sees_a_failed_release_and_retries_it(browser, admin_url):  # noqa: F811
    User.objects.create_superuser("root", password=PASSWORD)
    incident_id = an_incident("killed with its job out", ended=True)
    failed = a_resource(incident_id, ResourceStatus.FAILED, ref="3f2b9c1e-0d4a-4e8b-9a7c-5b1d2e3f4711",
                        comment="UnknownJob: scheduler unreachable", release_attempts=1)
    a_resource(incident_id, ResourceStatus.RELEASED, ref="job-4712", comment="released by the workflow")

    page = log_in(browser, admin_url, "root", width=1366)
    page.goto(f"{admin_url}/admin/incidents/incident/{incident_id}/change/")
    assert page.inner_text("#wf-resources-outstanding").startswith(
        "1 resource release(s) outstanding: not fully cleaned")
    rows = page.locator("#wf-resources tr.wf-resource")
    assert rows.count() == 2
    failed_row = page.locator('#wf-resources tr[data-status="FAILED"]')
    assert "5b1d2e3f4711" in failed_row.inner_text() and "scheduler unreachable" in failed_row.inner_text()
    fits = page.locator("#wf-resources").evaluate(
        "box => box.querySelector('table').getBoundingClientRect().right"
        " <= box.getBoundingClientRect().right")
    assert fits  # the table stays inside its box at 1366 px: no sideways scrolling
    artifacts = Path(settings.VAR_DIR) / "test-artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    page.locator("#wf-resources").scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / "admin-resources.png"), full_page=False)

    failed_row.locator("input[name=reason]").fill("scheduler is back")
    failed_row.locator("button", has_text="Retry release").click()
    page.wait_for_selector(".messagelist .success")
    assert f"Sent a new release of batch_job {failed.ref}" in page.inner_text(".messagelist")
    assert page.locator('#wf-resources tr[data-status="RELEASING"]').count() == 1
    failed.refresh_from_db()
    assert (failed.status, failed.release_attempts) == (ResourceStatus.RELEASING, 2)
    assert ExternalResource.objects.filter(status=ResourceStatus.FAILED).count() == 0

    page.goto(f"{admin_url}/admin/incidents/externalresource/")
    listed = page.inner_text("#result_list")
    assert "3f2b9c1e-0d4" in listed and "job-4712" not in listed  # outstanding ones only
    fits = page.locator("#changelist .results").evaluate("box => box.scrollWidth <= box.clientWidth")
    assert fits  # the list fits beside its filters at 1366 px
    page.screenshot(path=str(artifacts / "admin-resources-list.png"), full_page=False)
