"""The operator's side of incident priority: `manage.py set_priority` (its result and its
refusals) and the console (the list's column, filter and order; the incident page's form
behind incidents.set_priority, recorded with who and why). The engine's side (the order of
delivery, the republishing) is tests/test_priority.py's."""
from __future__ import annotations

import html
import re
import subprocess
import sys
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from incidents import workflow
from incidents.engine import audit, operations
from incidents.models import Incident, IncidentPriority, IncidentStatus

from .conftest import staff

pytestmark = pytest.mark.usefixtures("transactional_db", "broker")

CHANGE = "admin:incidents_incident_change"
PRIORITY = "admin:incidents_incident_priority"


def waiting_incident(name: str = "flood", messages: int = 2) -> str:
    """A live incident with `messages` messages waiting in probe_count (no worker runs)."""
    incident_id = workflow.CreateIncident(name=name, kind="TEST")
    for n in range(messages):
        workflow.send(message={"IncidentID": incident_id, "n": n}, queue="probe_count")
    workflow.FlushMessages()
    return incident_id


def priority_of(incident_id: str) -> int:
    return Incident.objects.get(pk=incident_id).priority


def set_priority(*args: str) -> str:
    out = StringIO()
    call_command("set_priority", *args, stdout=out)
    return out.getvalue()


# The command


def test_the_command_raises_the_priority_republishes_what_waits_and_records_who_and_why():
    incident_id = waiting_incident(messages=2)
    said = set_priority(incident_id[:8], "URGENT", "--reason", "levee breach", "--by", "alice")
    assert said == (f"incident {incident_id[:8]}: normal -> urgent; 2 waiting message(s) "
                    "published again at urgent\n")
    assert priority_of(incident_id) == IncidentPriority.URGENT
    record = audit.history(incident_id)[0]
    assert (record.action, record.by, record.reason) == ("set_priority", "alice", "levee breach")
    assert (record.details["before"], record.details["after"]) == (1, 3)


def test_the_command_records_the_user_on_the_command_line_by_default_and_takes_a_number():
    incident_id = workflow.CreateIncident(name="quiet", kind="TEST")
    said = set_priority(incident_id, "0")
    assert said == f"incident {incident_id[:8]}: normal -> low; 0 waiting message(s) published again at low\n"
    assert audit.history(incident_id)[0].by.endswith("(command line)")
    assert set_priority(incident_id, "low") == (
        f"incident {incident_id[:8]}: low already; its priority is unchanged\n")


@pytest.mark.parametrize(("level", "says"), [
    ("urgnet", "priority 'urgnet' is not a level; use one of low (0), normal (1), high (2), urgent (3)"),
    ("4", "priority '4' is not a level")])
def test_the_command_refuses_a_level_that_is_not_one_and_names_the_levels(level, says):
    incident_id = workflow.CreateIncident(name="typo", kind="TEST")
    with pytest.raises(CommandError, match=re.escape(says)):
        set_priority(incident_id, level)
    assert priority_of(incident_id) == IncidentPriority.NORMAL
    assert not audit.history(incident_id)


def test_the_command_refuses_an_unknown_id_and_an_ended_incident():
    with pytest.raises(CommandError, match="no incident's id starts with '00000000'"):
        set_priority("00000000", "urgent")
    incident_id = workflow.CreateIncident(name="over", kind="TEST")
    operations.cancel_incident(incident_id, reason="false alarm", by="test")
    with pytest.raises(CommandError, match=r"has ended \(CANCELLED\); only a live"):
        set_priority(incident_id, "urgent")
    assert priority_of(incident_id) == IncidentPriority.NORMAL


def test_a_typo_in_the_level_exits_non_zero_with_the_levels_on_stderr():
    result = subprocess.run([sys.executable, "manage.py", "set_priority", "3f2a9c1e", "hgih"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "CommandError: set_priority: priority 'hgih' is not a level; use one of low" in result.stderr
    assert result.stdout == ""


# The console


def test_the_list_shows_the_priority_urgent_marked_and_filters_and_sorts_by_it():
    ids = {name: workflow.CreateIncident(name=name, kind="TEST") for name in ("calm", "fire", "leak")}
    Incident.objects.filter(pk=ids["fire"]).update(priority=IncidentPriority.URGENT)
    Incident.objects.filter(pk=ids["leak"]).update(priority=IncidentPriority.LOW)
    viewer = staff("viewer", "view_incident")
    url = reverse("admin:incidents_incident_changelist")
    page = viewer.get(url).content.decode()
    assert re.search(r'<span class="wf-priority wf-urgent"[^>]*>urgent</span>', page)
    assert page.count("wf-urgent") == 1 and '<span class="wf-priority">low</span>' in page
    urgent_only = viewer.get(url, {"priority__exact": IncidentPriority.URGENT}).content.decode()
    assert "fire" in urgent_only and "calm" not in urgent_only and "leak" not in urgent_only
    # The column's header sorts by it, as Django links it: ?o=<its index>.
    order = re.search(r'column-priority_shown">.*?href="\?o=(\d+)', page, re.S)
    assert order, "the priority column is not sortable"
    rows = viewer.get(url, {"o": f"-{order[1]}"}).content.decode()
    assert rows.index(">fire<") < rows.index(">calm<") < rows.index(">leak<")


def test_without_the_permission_the_page_shows_the_priority_but_no_form_and_a_post_is_refused():
    incident_id = waiting_incident()
    viewer = staff("viewer", "view_incident")
    page = viewer.get(reverse(CHANGE, args=[incident_id])).content.decode()
    assert '<span class="wf-priority">normal</span>' in page
    assert 'id="wf-priority-form"' not in page
    response = viewer.post(reverse(PRIORITY, args=[incident_id]),
                           {"level": IncidentPriority.URGENT, "reason": "crafted"})
    assert response.status_code == 403
    assert priority_of(incident_id) == IncidentPriority.NORMAL and not audit.history(incident_id)


def test_an_operator_with_the_permission_changes_it_and_the_page_lists_who_why_and_what():
    incident_id = waiting_incident(messages=1)
    operator = staff("dispatcher", "view_incident", "set_priority")
    page = operator.get(reverse(CHANGE, args=[incident_id])).content.decode()
    assert 'id="wf-priority-form"' in page and "csrfmiddlewaretoken" in page
    response = operator.post(reverse(PRIORITY, args=[incident_id]),
                             {"level": IncidentPriority.URGENT, "reason": "school in its path"})
    assert response.status_code == 302 and response["Location"] == reverse(CHANGE, args=[incident_id])
    assert priority_of(incident_id) == IncidentPriority.URGENT
    page = operator.get(reverse(CHANGE, args=[incident_id])).content.decode()
    assert "Priority normal -&gt; urgent: 1 waiting message(s) published again at urgent." in page
    actions = html.unescape(page.split('id="wf-actions"')[1].split("</table>")[0])
    assert "set_priority" in actions and "dispatcher (admin)" in actions
    assert "school in its path" in actions
    assert re.search(r"before\W+(1|normal)\W", actions) and re.search(r"after\W+(3|urgent)\W", actions)


def test_an_ended_incident_has_no_form_and_a_post_shows_why_it_cannot_change():
    incident_id = waiting_incident()
    operations.cancel_incident(incident_id, reason="false alarm", by="test")
    operator = staff("dispatcher", "view_incident", "set_priority")
    page = operator.get(reverse(CHANGE, args=[incident_id])).content.decode()
    assert 'id="wf-priority-form"' not in page
    response = operator.post(reverse(PRIORITY, args=[incident_id]),
                             {"level": IncidentPriority.HIGH, "reason": "late"})
    assert response.status_code == 200
    assert "has ended (CANCELLED); only a live" in response.content.decode()
    assert priority_of(incident_id) == IncidentPriority.NORMAL
    assert Incident.objects.get(pk=incident_id).status == IncidentStatus.CANCELLED
