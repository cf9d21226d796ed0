"""The operator's console: pages, actions and permissions (Django test client)."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from incidents import workflow
from incidents.formatting import human_duration, timestamp
from incidents.models import Incident, IncidentStatus, MessageLog

from .conftest import staff

pytestmark = pytest.mark.usefixtures("broker")


@pytest.fixture
def viewer(transactional_db) -> Client:
    return staff("viewer", "view_incident", "view_messagelog")


@pytest.fixture
def canceller(transactional_db) -> Client:
    return staff("canceller", "view_incident", "cancel_incident")


@pytest.fixture
def operator(transactional_db) -> Client:
    return staff("operator", "view_incident", "add_incident", "cancel_incident", "kill_incident")


def page(incident_id: str) -> str:
    return reverse("admin:incidents_incident_change", args=[incident_id])


def test_anonymous_users_are_sent_to_the_login_page(incident_id):
    for url in (reverse("admin:incidents_incident_changelist"), page(incident_id),
                reverse("admin:incidents_incident_kill", args=[incident_id])):
        response = Client().get(url)
        assert response.status_code == 302 and "/admin/login/" in response["Location"]
    response = Client().post(reverse("admin:incidents_incident_kill", args=[incident_id]),
                             {"confirmed": "yes"})
    assert response.status_code == 302
    assert Incident.objects.get(pk=incident_id).status == IncidentStatus.PENDING


def test_the_list_shows_status_counts_and_finds_an_incident_by_id(viewer, incident_id):
    workflow.send(message={"IncidentID": incident_id, "left": 0}, queue="probe_chain")
    workflow.FlushMessages()
    other = workflow.CreateIncident(name="other", kind="FLOOD")
    html = viewer.get(reverse("admin:incidents_incident_changelist")).content.decode()
    assert "test incident" in html and "other" in html and "wf-status" in html
    assert "1&nbsp;sent" in html
    found = viewer.get(reverse("admin:incidents_incident_changelist"), {"q": other}).content.decode()
    assert "other" in found and "test incident" not in found


def test_a_viewer_sees_the_incident_page_without_cancel_or_kill(viewer, incident_id):
    workflow.send(message={"IncidentID": incident_id, "left": 0}, queue="probe_chain", dest_tag="hop")
    workflow.FlushMessages()
    html = viewer.get(page(incident_id)).content.decode()
    assert "<svg" in html and "hop" in html  # the graph, inline
    assert "Message log (1, newest first)" in html
    assert "task result" not in html  # results are not kept by default: no dead link
    assert "wf-cancel" not in html and "wf-kill" not in html
    changelist = viewer.get(reverse("admin:incidents_incident_changelist")).content.decode()
    assert "kill_selected" not in changelist and "cancel_selected" not in changelist


def test_owner_area_and_duration_show_and_the_list_filters_by_owner(viewer):
    mine = workflow.CreateIncident("Ridge fire", "WILDFIRE", None, "alice", "38.6/-120.5",
                                   "38.1/-119.9", 24)
    workflow.CreateIncident("Flood", "FLOOD", user_id="bob")
    html = viewer.get(page(mine)).content.decode()
    assert "alice" in html and "38.6/-120.5 to 38.1/-119.9" in html and "24.0" in html
    assert 'class="wf-area"' in html and "<rect" in html  # the area drawn, no map tiles
    changelist = reverse("admin:incidents_incident_changelist")
    filtered = viewer.get(changelist, {"owner": "alice"}).content.decode()
    assert "Ridge fire" in filtered and "Flood" not in filtered


@pytest.mark.parametrize("verb", ["cancel", "kill"])
def test_crafted_posts_without_the_permission_are_refused(viewer, incident_id, verb):
    url = reverse(f"admin:incidents_incident_{verb}", args=[incident_id])
    assert viewer.post(url, {"confirmed": "yes", "reason": "x"}).status_code == 403
    viewer.post(reverse("admin:incidents_incident_changelist"),
                {"action": f"{verb}_selected", "_selected_action": [incident_id],
                 "confirmed": "yes"})
    assert Incident.objects.get(pk=incident_id).status == IncidentStatus.PENDING


def test_cancel_permission_does_not_give_kill(canceller, incident_id):
    html = canceller.get(page(incident_id)).content.decode()
    assert "wf-cancel" in html and "wf-kill" not in html
    url = reverse("admin:incidents_incident_kill", args=[incident_id])
    assert canceller.post(url, {"confirmed": "yes"}).status_code == 403


def test_cancel_from_the_incident_page_asks_then_records_who_and_why(canceller, incident_id):
    url = reverse("admin:incidents_incident_cancel", args=[incident_id])
    confirm = canceller.get(url).content.decode()
    assert "Yes, cancel" in confirm and "test incident" in confirm
    assert Incident.objects.get(pk=incident_id).status == IncidentStatus.PENDING
    response = canceller.post(url, {"confirmed": "yes", "reason": "false alarm"})
    assert response.status_code == 302 and response["Location"] == page(incident_id)
    incident = Incident.objects.get(pk=incident_id)
    assert (incident.status, incident.comment, incident.ended_by) == (
        IncidentStatus.CANCELLED, "false alarm", "canceller (admin)")


def test_kill_action_on_a_selection_confirms_then_kills(operator, incident_id):
    second = workflow.CreateIncident(name="second", kind="TEST")
    changelist = reverse("admin:incidents_incident_changelist")
    selection = {"action": "kill_selected", "_selected_action": [incident_id, second]}
    confirm = operator.post(changelist, selection).content.decode()
    assert "Yes, kill" in confirm and "second" in confirm
    assert Incident.objects.filter(status=IncidentStatus.KILLED).count() == 0
    operator.post(changelist, {**selection, "confirmed": "yes", "reason": "stop all"})
    assert set(Incident.objects.values_list("status", flat=True)) == {IncidentStatus.KILLED}


def test_csrf_is_enforced(transactional_db, incident_id):
    user = User.objects.create_superuser("root", password="pw-for-tests-only")
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    url = reverse("admin:incidents_incident_cancel", args=[incident_id])
    assert client.post(url, {"confirmed": "yes"}).status_code == 403
    assert Incident.objects.get(pk=incident_id).status == IncidentStatus.PENDING


def test_start_an_incident_of_a_known_kind(operator):
    start = reverse("admin:incidents_incident_start")
    form = operator.get(start).content.decode()
    assert "QUICKSORT" in form and "DUMMY_INCIDENT" in form
    response = operator.post(start, {"kind": "QUICKSORT", "name": "from admin",
                                     "incident_date": "2026-08-01 14:00",
                                     "parameters": '{"size": 50, "seed": 3}'})
    incident = Incident.objects.get(name="from admin")
    assert response["Location"] == page(str(incident.pk))
    assert incident.parameters == {"size": 50, "seed": 3}
    assert incident.owner == "operator"  # who started it, unless the form names an owner
    assert MessageLog.objects.get(incident=incident).destination == "quicksort_start"


def test_start_takes_the_originals_owner_area_and_duration_and_refuses_half_an_area(operator):
    start = reverse("admin:incidents_incident_start")
    operator.post(start, {"kind": "QUICKSORT", "name": "fire", "parameters": "{}",
                          "owner": "alice", "upper_left": "38.6/-120.5",
                          "lower_right": "38.1/-119.9", "duration": "24"})
    incident = Incident.objects.get(name="fire")
    assert (incident.owner, incident.upper_left_latlong, incident.lower_right_latlong,
            incident.duration) == ("alice", "38.6/-120.5", "38.1/-119.9", 24.0)
    html = operator.post(start, {"kind": "QUICKSORT", "name": "half", "parameters": "{}",
                                 "upper_left": "38.6/-120.5"}).content.decode()
    assert "give both corners" in html and not Incident.objects.filter(name="half").exists()


@pytest.mark.parametrize(("parameters", "says"), [("{bad", "Not valid JSON"),
                                                  ("[1]", "Give a JSON object")])
def test_start_refuses_bad_parameters(operator, parameters, says):
    html = operator.post(reverse("admin:incidents_incident_start"),
                         {"kind": "QUICKSORT", "name": "x", "parameters": parameters}).content.decode()
    assert says in html and not Incident.objects.exists()


def test_starting_needs_the_add_permission(viewer):
    assert viewer.get(reverse("admin:incidents_incident_start")).status_code == 403


def test_live_state_and_graph_endpoints(viewer, incident_id):
    workflow.send(message={"IncidentID": incident_id, "left": 0}, queue="probe_chain")
    workflow.FlushMessages()
    state = viewer.get(reverse("admin:incidents_incident_live", args=[incident_id])).json()
    assert state["status"] == "PENDING" and state["live"] is True and state["counts"]["SENT"] == 1
    svg = viewer.get(reverse("admin:incidents_incident_graph", args=[incident_id]))
    assert svg["Content-Type"] == "image/svg+xml" and b"<svg" in svg.content


def test_the_message_log_is_read_only(viewer, incident_id, settings):
    settings.WORKFLOW_STORE_TASK_RESULTS = True  # each row then links to its task result
    workflow.send(message={"IncidentID": incident_id}, queue="A_queue")
    workflow.FlushMessages()
    row = MessageLog.objects.get()
    url = reverse("admin:incidents_messagelog_change", args=[row.pk])
    html = viewer.get(url).content.decode()
    assert "task result" in html and 'name="_save"' not in html
    assert viewer.post(url, {"status": "COMPLETE"}).status_code == 403
    assert MessageLog.objects.get().status == row.status


@pytest.mark.parametrize("crafted", ["00000000-0000-0000-0000-000000000000", "not-a-uuid",
                                     "../../etc/passwd", "1 OR 1=1"])
def test_crafted_ids_find_nothing(operator, crafted):
    for name in ("change", "cancel", "kill", "graph", "live"):
        try:
            url = reverse(f"admin:incidents_incident_{name}", args=[crafted])
        except Exception:  # a malformed id does not even route
            continue
        response = operator.get(url)
        assert response.status_code in (302, 404), (name, response.status_code)
    response = operator.get(f"/admin/incidents/incident/{crafted}/kill/")
    assert response.status_code in (302, 404)


def test_with_flower_configured_each_message_links_to_its_task_there(viewer, incident_id,
                                                                     settings):
    message_id = workflow.send(message={"IncidentID": incident_id}, queue="A_queue")
    workflow.FlushMessages()
    flower_link = f'href="http://127.0.0.1:5555/task/{message_id}"'
    assert flower_link not in viewer.get(page(incident_id)).content.decode()
    settings.WORKFLOW_FLOWER_URL = "http://127.0.0.1:5555/"
    assert flower_link in viewer.get(page(incident_id)).content.decode()
    row_page = reverse("admin:incidents_messagelog_change", args=[message_id])
    assert flower_link in viewer.get(row_page).content.decode()
    # And back: Flower shows the task id, which the message log finds.
    found = viewer.get(reverse("admin:incidents_messagelog_changelist"), {"q": message_id})
    assert message_id in found.content.decode()


@pytest.mark.parametrize(("seconds", "shown"), [
    (0.000028487000008681207, "28 µs"), (0.0045, "4.5 ms"), (0.5, "500 ms"),
    (0.9997, "1.0 s"), (3.1, "3.1 s"), (12.4, "12 s"), (59.97, "1 min"), (125, "2 min 5 s"),
    (3780, "1 h 3 min"), (7200, "2 h"), (90000, "1 d 1 h"), (-0.001, "0 µs"), (None, "-")])
def test_durations_print_for_humans(seconds, shown):
    assert human_duration(seconds) == shown


def test_timestamps_show_seconds_in_the_projects_time_zone(settings):
    moment = datetime(2026, 12, 2, 10, 47, 37, 512000, tzinfo=UTC)
    assert timestamp(moment) == "2026-12-02 10:47:37"
    settings.TIME_ZONE = "Europe/Madrid"
    assert timestamp(moment) == "2026-12-02 11:47:37"
    assert timestamp(None) == "-"


def test_the_list_and_the_page_say_how_long_an_incident_ran_and_when(viewer, incident_id,
                                                                       settings):
    settings.TIME_ZONE = "Europe/Madrid"
    workflow.send(message={"IncidentID": incident_id, "left": 0}, queue="probe_chain")
    workflow.FlushMessages()
    MessageLog.objects.filter(incident_id=incident_id).update(duration=0.000028487000008681207)
    created = datetime(2026, 12, 2, 10, 47, 30, tzinfo=UTC)
    Incident.objects.filter(pk=incident_id).update(
        status=IncidentStatus.COMPLETE, created_at=created,
        activated_at=created + timedelta(seconds=1.5),
        completed_at=created + timedelta(seconds=126.5))

    changelist = viewer.get(reverse("admin:incidents_incident_changelist")).content.decode()
    assert "2026-12-02 11:47:30" in changelist  # created, to the second, in Madrid
    assert ">2 min 5 s<" in changelist  # ran for: first handler's start to the end
    assert "Times in Europe/Madrid" in changelist and "from the first handler" in changelist
    html = viewer.get(page(incident_id)).content.decode()
    for shown in ("2026-12-02 11:47:30", "2026-12-02 11:47:31", "2026-12-02 11:49:36",
                  "2 min 5 s", "1.5 s", "28 µs"):
        assert shown in html, shown
    assert "0.0000284" not in html
    messages = viewer.get(reverse("admin:incidents_messagelog_changelist")).content.decode()
    assert "28 µs" in messages and "0.0000284" not in messages
    assert "column-result" not in messages  # no column of only "-": no results kept, no Flower


def test_a_live_incident_shows_how_long_it_has_run_so_far(viewer, incident_id):
    Incident.objects.filter(pk=incident_id).update(
        status=IncidentStatus.ACTIVE, activated_at=timezone.now() - timedelta(seconds=42))
    changelist = viewer.get(reverse("admin:incidents_incident_changelist")).content.decode()
    assert " s so far<" in changelist
    assert 'data-live="yes"' in changelist  # what the list's refresh script watches
    assert "incidents/list_refresh.js" in changelist


def test_only_live_incidents_keep_the_list_refreshing(viewer, incident_id):
    Incident.objects.filter(pk=incident_id).update(status=IncidentStatus.COMPLETE)
    changelist = viewer.get(reverse("admin:incidents_incident_changelist")).content.decode()
    assert "data-live" not in changelist and "wf-status" in changelist


def test_the_search_finds_an_incident_by_the_start_of_its_id(viewer):
    def declare(pk: str, name: str) -> None:
        Incident.objects.create(pk=uuid.UUID(pk), name=name, kind="TEST",
                                incident_date=timezone.now())

    declare("3f2a9c1e-1111-4000-8000-000000000001", "first")
    declare("3f2a9c1e-2222-4000-8000-000000000002", "second")
    declare("77777777-0000-4000-8000-000000000003", "third")
    changelist = reverse("admin:incidents_incident_changelist")

    def found(term: str) -> set[str]:
        html = viewer.get(changelist, {"q": term}).content.decode()
        return {name for name in ("first", "second", "third") if f">{name}</a>" in html}

    assert found("77777777") == {"third"}  # the 8 characters the wildfire map shows
    assert found("3F2A9C1E-2") == {"second"}  # any case, hyphens as printed
    assert found("3f2a9c1e") == {"first", "second"}  # shared: both listed
    assert found("3f2a9c1e-1111-4000-8000-000000000001") == {"first"}
    assert found("7777777") == set()  # 7 characters: a name search, which finds none
    assert found("sec") == {"second"}


def test_kill_looks_dangerous_and_its_page_says_how_it_differs_from_cancel(operator, incident_id):
    html = operator.get(page(incident_id)).content.decode()
    assert 'class="wf-danger"' in html and 'id="wf-kill" class="wf-kill"' in html
    assert html.index('id="wf-cancel"') < html.index('id="wf-graph"')  # buttons above the graph
    kill = operator.get(reverse("admin:incidents_incident_kill", args=[incident_id])).content.decode()
    assert 'class="wf-kill"' in kill and "Yes, kill" in kill
    assert "terminated" in kill and "finish and commit" in kill  # Kill next to Cancel
    assert '<tr class="wf-chosen"><th>Kill</th>' in kill
    cancel = operator.get(reverse("admin:incidents_incident_cancel",
                                  args=[incident_id])).content.decode()
    assert 'value="Yes, cancel">' in cancel and '<tr class="wf-chosen"><th>Cancel</th>' in cancel


def test_the_site_root_and_view_site_lead_to_the_console(viewer):
    assert Client().get("/")["Location"] == reverse("admin:index")
    index = viewer.get(reverse("admin:index"))
    assert 'href="/"' in index.content.decode()  # "View site"
    assert viewer.get("/", follow=True).redirect_chain[-1][0] == reverse("admin:index")
