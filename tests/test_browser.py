"""The admin in a real browser: Playwright driving Debian's headless Chromium.

Logs in, starts a quicksort from the admin and watches it complete with its graph, starts a
long chain and cancels it, and checks that a user without the kill permission cannot kill.
Then, in 1366 and 1920 px windows: every page fits the window (no sideways scrolling, no list
column cut off, no button over the graph), the list refreshes itself while an incident runs,
and Kill is red and says how it differs from Cancel. Screenshots go to var/test-artifacts/.
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
WIDTHS = (1366, 1920)  # a common laptop and a full-HD screen


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


def log_in(browser, base: str, username: str, width: int = 1700):
    page = browser.new_page(viewport={"width": width, "height": 1000})
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


#: What does not fit the window on the page shown: each problem in words, none when it fits.
LAYOUT_PROBLEMS = """() => {
  const problems = [], width = window.innerWidth;
  const page = document.documentElement.scrollWidth;
  if (page > width) problems.push(`the page is ${page} px wide in a ${width} px window`);
  const results = document.querySelector("#changelist-form .results");
  if (results && results.scrollWidth > results.clientWidth)
    problems.push(`list columns cut off: ${results.scrollWidth} px in ${results.clientWidth} px`);
  const graph = document.getElementById("wf-graph");
  if (graph) {
    const box = graph.getBoundingClientRect();
    for (const tool of document.querySelectorAll(".object-tools li")) {
      const t = tool.getBoundingClientRect();
      if (t.left < box.right && t.right > box.left && t.top < box.bottom && t.bottom > box.top)
        problems.push(`the ${tool.innerText.trim()} button covers the graph`);
      if (t.right > width) problems.push(`the ${tool.innerText.trim()} button is off-screen`);
    }
    const svg = graph.querySelector("svg");
    if (svg && graph.classList.contains("wf-fit")
        && (graph.scrollWidth > graph.clientWidth + 1 || graph.scrollHeight > graph.clientHeight + 1))
      problems.push("the graph, fitted, still scrolls in its box");
  }
  return problems;
}"""


def test_the_console_fits_1366_and_1920_px_windows_and_the_list_refreshes_itself(
        browser, admin_url, workers):
    workers.start("w1", concurrency=2)
    User.objects.create_superuser("root", password=PASSWORD)
    artifacts = Path(settings.VAR_DIR) / "test-artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    base = admin_url
    page = log_in(browser, base, "root", width=WIDTHS[0])
    sort_id = start(page, base, "QUICKSORT", "wide sort", '{"size": 200, "seed": 7}')
    page.wait_for_function("document.getElementById('wf-live')?.dataset.done === 'yes'",
                           timeout=120_000)

    # The list follows a running incident to its end without a reload.
    start(page, base, "PROBE_CHAIN", "short chain", '{"left": 25, "pause": 0.1}')
    page.goto(f"{base}/admin/incidents/incident/")
    assert page.locator("#result_list tr", has_text="short chain").locator(
        ".wf-status[data-live]").count() == 1, "the chain ended before the list was shown"
    page.evaluate("window.wfSameDocument = true")
    page.wait_for_function(
        """() => [...document.querySelectorAll('#result_list tr')]
                 .find(row => row.innerText.includes('short chain'))
                 ?.querySelector('.wf-status').textContent === 'COMPLETE'""", timeout=60_000)
    assert page.evaluate("window.wfSameDocument") is True  # updated in place, not reloaded
    ran_for = page.locator("#result_list tr", has_text="short chain").locator(
        ".field-ran_for").inner_text()
    assert ran_for.endswith(("ms", " s")) and "so far" not in ran_for, ran_for

    live_id = start(page, base, "PROBE_CHAIN", "live chain", '{"left": 1000000, "pause": 0.05}')
    page.wait_for_function("document.getElementById('wf-status')?.textContent === 'ACTIVE'",
                           timeout=60_000)
    pages = {"list": "/admin/incidents/incident/", "start": "/admin/incidents/incident/start/",
             "incident": f"/admin/incidents/incident/{sort_id}/change/",
             "live-incident": f"/admin/incidents/incident/{live_id}/change/",
             "kill-confirm": f"/admin/incidents/incident/{live_id}/kill/",
             "messages": "/admin/incidents/messagelog/"}
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        for name, url in pages.items():
            page.goto(base + url)
            assert page.evaluate(LAYOUT_PROBLEMS) == [], f"{name} page at {width} px"
            page.screenshot(path=str(artifacts / f"admin-{name}-{width}.png"), full_page=False)

        if width == WIDTHS[0]:  # selecting rows for an action pauses the list's refresh
            page.goto(base + pages["list"])
            note = "document.getElementById('wf-list-refresh').textContent"
            checkbox = page.locator("#result_list tr", has_text="live chain").locator(
                "input.action-select")
            checkbox.check()
            page.wait_for_function(f"{note}.includes('paused')", timeout=30_000)
            checkbox.uncheck()
            page.wait_for_function(f"{note}.startsWith('Refreshing')", timeout=30_000)

        # On the live incident: Kill in the delete red, set apart from the other buttons.
        page.goto(base + pages["live-incident"])
        kill = page.locator("#wf-kill").bounding_box()
        others = [page.locator(s).bounding_box() for s in ("#wf-cancel", ".historylink")]
        assert all(kill["x"] - (box["x"] + box["width"]) >= 20 for box in others)
        red, green, blue = (int(c) for c in page.locator("#wf-kill").evaluate(
            "el => getComputedStyle(el).backgroundColor").strip("rgba()").split(",")[:3])
        assert red > 150 and green < 80 and blue < 80, (red, green, blue)

        # The wide quicksort graph: whole in its box, then at full size scrolling inside it.
        page.goto(base + pages["incident"])
        page.click("#wf-graph-size")
        graph = page.locator("#wf-graph").evaluate(
            "el => [el.scrollWidth, el.clientWidth, document.documentElement.scrollWidth]")
        assert graph[0] > graph[1] and graph[2] <= width, graph
        page.click("#wf-graph-size")  # back to fitted, for the next width and the next run
        assert page.evaluate(LAYOUT_PROBLEMS) == []

    page.goto(base + pages["live-incident"])
    page.click("#wf-kill")
    summary = page.inner_text("#wf-verb-summary") + page.inner_text("#wf-verbs")
    assert "terminated" in summary and "Cancel" in summary and "finish" in summary
    page.fill("#id_reason", "killed from the browser")
    page.click("#wf-confirm")
    page.wait_for_function("document.getElementById('wf-live')?.dataset.done === 'yes'",
                           timeout=120_000)
    assert page.inner_text("#wf-status") == "KILLED"
    assert Incident.objects.get(pk=live_id).status == IncidentStatus.KILLED
