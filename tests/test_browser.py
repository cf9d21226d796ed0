"""The admin in a real browser: Playwright driving Debian's headless Chromium.

Logs in, starts a quicksort from the admin and watches it complete with its graph, starts a
long chain and cancels it, and checks that a user without the kill permission cannot kill.
Screenshots of the list and incident pages go to var/test-artifacts/.
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import Permission, User

from incidents.models import Incident, IncidentStatus

from .conftest import REQUIRE_SERVICES

pytestmark = pytest.mark.e2e

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PASSWORD = "browser-test-password"


@pytest.fixture
def browser() -> Iterator[object]:
    playwright_api = pytest.importorskip("playwright.sync_api")
    if not os.path.exists(CHROMIUM):
        if REQUIRE_SERVICES:
            pytest.fail(f"Chromium not found at {CHROMIUM}; apt-get install chromium")
        pytest.skip(f"Chromium not found at {CHROMIUM}; apt-get install chromium")
    # Playwright's sync API keeps an event loop in this thread; the ORM calls this test makes
    # between browser steps are ordinary blocking calls.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield chromium
        chromium.close()
    del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]


@pytest.fixture
def admin_url(transactional_db) -> Iterator[str]:
    """The admin served on 127.0.0.1 for this test only (stopped, connections closed, after)."""
    from django.contrib.staticfiles.handlers import StaticFilesHandler
    from django.test.testcases import LiveServerThread

    server = LiveServerThread("127.0.0.1", StaticFilesHandler, port=0)
    server.daemon = True
    server.start()
    server.is_ready.wait(timeout=60)
    if server.error:
        raise server.error
    yield f"http://127.0.0.1:{server.port}"
    server.terminate()


def log_in(browser, base: str, username: str):
    page = browser.new_page(viewport={"width": 1700, "height": 1000})
    page.goto(f"{base}/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("#user-tools")
    return page


def start(page, base: str, kind: str, name: str, parameters: str) -> str:
    page.goto(f"{base}/admin/incidents/incident/start/")
    page.select_option("#id_kind", kind)
    page.fill("#id_name", name)
    page.fill("#id_parameters", parameters)
    page.click("#wf-start input[type=submit]")
    page.wait_for_selector("#wf-live")
    return page.url.rstrip("/").split("/")[-2]


def test_an_operator_runs_watches_and_cancels_incidents_in_the_browser(browser, admin_url, workers):
    workers.start("w1")
    workers.start("w2")
    User.objects.create_superuser("root", password=PASSWORD)
    limited = User.objects.create_user("limited", password=PASSWORD, is_staff=True)
    limited.user_permissions.set(Permission.objects.filter(
        codename__in=["view_incident", "add_incident", "cancel_incident"]))
    artifacts = Path(settings.VAR_DIR) / "test-artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    base = admin_url

    page = log_in(browser, base, "root")
    sorted_id = start(page, base, "QUICKSORT", "browser sort", '{"size": 400, "seed": 7}')
    page.wait_for_function("document.getElementById('wf-live')?.dataset.done === 'yes'",
                           timeout=120_000)
    assert page.inner_text("#wf-status") == "COMPLETE"
    assert page.locator("#wf-graph svg g.node").count() > 10
    assert "split r" in page.inner_text("#wf-graph")
    page.screenshot(path=str(artifacts / "admin-incident.png"), full_page=False)

    chain_id = start(page, base, "PROBE_CHAIN", "long chain", '{"left": 1000000, "pause": 0.02}')
    page.wait_for_function("document.getElementById('wf-status')?.textContent === 'ACTIVE'",
                           timeout=60_000)
    page.click("#wf-cancel")
    page.fill("#id_reason", "called off from the browser")
    page.click("#wf-confirm")
    page.wait_for_function("document.getElementById('wf-live')?.dataset.done === 'yes'",
                           timeout=120_000)
    assert page.inner_text("#wf-status") == "CANCELLED"
    page.goto(f"{base}/admin/incidents/incident/")
    page.screenshot(path=str(artifacts / "admin-list.png"), full_page=False)
    assert "browser sort" in page.content() and "long chain" in page.content()

    # A user without the kill permission: no button, and a crafted POST is refused.
    limited_page = log_in(browser, base, "limited")
    victim = start(limited_page, base, "PROBE_CHAIN", "not killable", '{"left": 1000000, "pause": 0.02}')
    assert limited_page.locator("#wf-kill").count() == 0
    assert limited_page.locator("#wf-cancel").count() == 1
    token = next(c["value"] for c in limited_page.context.cookies() if c["name"] == "csrftoken")
    response = limited_page.request.post(
        f"{base}/admin/incidents/incident/{victim}/kill/",
        form={"confirmed": "yes", "reason": "crafted", "csrfmiddlewaretoken": token},
        headers={"Referer": f"{base}/admin/"})
    assert response.status == 403
    assert Incident.objects.get(pk=victim).status != IncidentStatus.KILLED
    assert Incident.objects.get(pk=sorted_id).status == IncidentStatus.COMPLETE
    incident = Incident.objects.get(pk=chain_id)
    assert (incident.status, incident.comment, incident.ended_by) == (
        IncidentStatus.CANCELLED, "called off from the browser", "root (admin)")
    Incident.objects.filter(pk=victim).update(status=IncidentStatus.CANCELLED)  # stop its chain
