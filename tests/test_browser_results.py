"""Results on the incident page, in headless Chromium: a Julia incident's image shown inline
(and loaded) at 1366 and 1920 px wide. Screenshots go to var/test-artifacts/."""
from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import User

from incidents.engine import operations
from incidents.models import IncidentStatus, ResultFile
from workflows import julia

from .conftest import ended, wait_until
from .test_browser import PASSWORD, admin_url, browser, log_in  # noqa: F401  (fixtures)

pytestmark = pytest.mark.e2e

WIDTH, HEIGHT = 160, 120


def test_a_julia_image_shows_inline_on_its_incident_page(browser, admin_url, workers):  # noqa: F811
    workers.start("results1", concurrency=2)
    User.objects.create_superuser("root", password=PASSWORD)
    incident_id = operations.start_incident(name="julia for the browser", kind=julia.KIND, parameters={
        "width": WIDTH, "height": HEIGHT, "tiles": 2, "max_iter": 30})
    incident = wait_until(lambda: ended(incident_id), what="the julia incident to be cleaned up")
    assert incident.status == IncidentStatus.COMPLETE, incident.comment
    result = ResultFile.objects.get(incident_id=incident_id, name=julia.IMAGE)
    artifacts = Path(settings.VAR_DIR) / "test-artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)

    page = log_in(browser, admin_url, "root")
    for width in (1366, 1920):
        page.set_viewport_size({"width": width, "height": 900})
        page.goto(f"{admin_url}/admin/incidents/incident/{incident_id}/change/")
        image = page.locator("#wf-results img")
        assert image.count() == 1
        image.scroll_into_view_if_needed()
        page.wait_for_function("(img) => img.complete", arg=image.element_handle(), timeout=30_000)
        shown = image.evaluate("img => ({natural: [img.naturalWidth, img.naturalHeight],"
                               " right: img.getBoundingClientRect().right,"
                               " page: document.documentElement.clientWidth})")
        assert shown["natural"] == [WIDTH, HEIGHT]  # loaded, and it is the stitched image
        assert shown["right"] <= shown["page"]  # inside the window, no sideways scrolling
        assert julia.IMAGE in page.inner_text("#wf-results")
        page.locator("#wf-results").evaluate("el => el.scrollIntoView({block: 'start'})")
        page.screenshot(path=str(artifacts / f"admin-results-{width}.png"), full_page=False)
    download = page.request.get(f"{admin_url}/admin/incidents/incident/{incident_id}/results/"
                                f"{result.pk}/")
    assert download.status == 200 and download.headers["content-type"] == "image/png"
    assert download.body()[:8] == b"\x89PNG\r\n\x1a\n"
