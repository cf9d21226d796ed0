"""An operator sends a message into a live incident (admin form, `send_message`): validated as
send() validates, logged and drawn as coming from the operator, recorded, refused with the
reason when it cannot go."""
from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from incidents import workflow
from incidents.engine import audit, graph, interventions, operations, registry
from incidents.engine.graph import BY_OPERATOR, OPERATOR_FILL, START
from incidents.exceptions import IncidentNotLive, MessageError, QueueNameError
from incidents.models import HandlerState, Incident, IncidentStatus, MessageLog, MessageStatus
from incidents.processes import WorkerGroup, worker_env
from incidents.testing import run_until_idle

from .conftest import TEST_MODULES, ended, staff, wait_until

registry.load_workflow_modules(["tests.workflows.intervene"])
pytestmark = pytest.mark.usefixtures("broker")


def stuck_incident(folder) -> str:
    """An incident whose fetch step ran without its input and sent nothing: ACTIVE, with
    nothing in flight, waiting for an operator."""
    incident_id = workflow.CreateIncident(name="waits for data", kind="TEST")
    workflow.send(message={"IncidentID": incident_id, "folder": str(folder)}, queue="ext_fetch")
    workflow.FlushMessages()
    return incident_id


def total_of(incident_id: str) -> dict:
    return json.loads(HandlerState.objects.get(incident_id=incident_id, handler="total_handler").data)


@pytest.fixture
def intervene_workers(transactional_db, broker):
    with WorkerGroup(env=worker_env({"WORKFLOW_MODULES": f"{TEST_MODULES},tests.workflows.intervene"})
                     ) as group:
        yield group


@pytest.mark.e2e
def test_an_operator_hands_in_missing_data_and_reruns_a_step_and_both_workflows_complete(
        intervene_workers, tmp_path):
    intervene_workers.start("i1")
    missing, rerun = tmp_path / "missing", tmp_path / "rerun"
    missing.mkdir(), rerun.mkdir()
    waiting = stuck_incident(missing)  # its external service never answers
    again = stuck_incident(rerun)  # its input shows up late
    for incident_id in (waiting, again):
        wait_until(lambda i=incident_id: MessageLog.objects.filter(
            incident_id=i, destination="ext_fetch", status=MessageStatus.COMPLETE).exists(),
            what="the fetch step to run without its input")
    assert Incident.objects.get(pk=waiting).status == IncidentStatus.ACTIVE

    # Given the data by hand, the waiting step goes on.
    out = StringIO()
    call_command("send_message", waiting[:8], "ext_data", '{"values": [1, 2, 3]}',
                 "--reason", "the service is down; numbers read off its web page", stdout=out)
    assert out.getvalue().startswith("sent ") and "ext_data" in out.getvalue()
    # Once its input exists, the step run again goes on.
    (rerun / "data.json").write_text('{"values": [10, 20]}')
    interventions.inject_message(again, "ext_fetch", {"folder": str(rerun)}, by="alice (admin)",
                                 reason="input arrived late")

    done = wait_until(lambda: ended(waiting), what="the incident given its data to complete")
    assert done.status == IncidentStatus.COMPLETE
    assert total_of(waiting)["total"] == 6
    assert total_of(waiting)["from"].startswith("operator:") and \
        total_of(waiting)["from"].endswith("(command line)")
    redone = wait_until(lambda: ended(again), what="the rerun incident to complete")
    assert redone.status == IncidentStatus.COMPLETE
    assert total_of(again) == {"total": 30, "from": "fetch_handler"}
    [injected] = MessageLog.objects.filter(incident_id=again, originator__startswith="operator:")
    assert (injected.originator, injected.destination, injected.status) == (
        "operator:alice (admin)", "ext_fetch", MessageStatus.COMPLETE)


def test_an_injected_message_is_logged_as_the_operators_recorded_and_run(incident_id):
    message_id = interventions.inject_message(incident_id, "ext_data", {"values": [4, 5]},
                                              by="bob (admin)", reason="hand-fed")
    row = MessageLog.objects.get(pk=message_id)
    assert (row.originator, row.destination, row.body["values"]) == (
        "operator:bob (admin)", "ext_data", [4, 5])
    assert row.body["IncidentID"] == incident_id and row.body["MessageID"] == message_id
    [action] = audit.history(incident_id)
    assert (action.action, action.by, action.reason) == ("inject", "bob (admin)", "hand-fed")
    assert action.details == {"queue": "ext_data", "message_id": message_id}
    run_until_idle()
    assert Incident.objects.get(pk=incident_id).status == IncidentStatus.COMPLETE
    assert total_of(incident_id) == {"total": 9, "from": "operator:bob (admin)"}


def test_an_operators_message_is_drawn_from_the_operator_hanging_off_start(incident_id):
    interventions.inject_message(incident_id, "ext_data", {"values": [1]}, by="carol (admin)")
    run_until_idle()
    built = graph.build(incident_id)
    operator = built.nodes["operator:carol (admin)"]
    assert operator.is_operator and operator.colour == OPERATOR_FILL
    assert operator.label == "carol (admin)\noperator"
    edges = {(e.sender, e.receiver, e.outcome) for e in built.edges}
    assert (START, "operator:carol (admin)", BY_OPERATOR) in edges
    assert ("operator:carol (admin)", "ext_data", "handled") in edges
    assert built.unreached() == set()
    dot = graph.to_dot(built)
    assert 'shape=hexagon' in next(line for line in dot.splitlines()
                                   if line.startswith('  "operator:carol (admin)" ['))
    assert ">an operator stepped in<" in graph.render(incident_id, "svg").decode()


def test_a_message_to_an_ended_incident_is_refused_and_nothing_is_sent(incident_id):
    operations.cancel_incident(incident_id, reason="over", by="test")
    with pytest.raises(IncidentNotLive, match="it is CANCELLED"):
        interventions.inject_message(incident_id, "ext_data", {"values": [1]}, by="dave (admin)")
    with pytest.raises(CommandError, match="it is CANCELLED"):
        call_command("send_message", incident_id, "ext_data", '{"values": [1]}', stdout=StringIO())
    assert not MessageLog.objects.filter(incident_id=incident_id, destination="ext_data").exists()
    assert [a.action for a in audit.history(incident_id)] == ["cancel"]


def test_a_message_that_is_not_json_is_refused_naming_the_key(incident_id):
    with pytest.raises(MessageError, match=r"message\['values'\]\[1\] is nan"):
        interventions.inject_message(incident_id, "ext_data", {"values": [1, float("nan")]})
    with pytest.raises(CommandError, match=r"message\['note'\] contains a NUL"):
        call_command("send_message", incident_id, "ext_data", '{"note": "a\\u0000b"}',
                     stdout=StringIO())
    with pytest.raises(CommandError, match="not valid JSON"):
        call_command("send_message", incident_id, "ext_data", '{"values": [1,', stdout=StringIO())
    with pytest.raises(CommandError, match="not an object"):
        call_command("send_message", incident_id, "ext_data", "[1, 2]", stdout=StringIO())
    with pytest.raises(MessageError, match=r"IncidentID .* is not incident"):
        interventions.inject_message(incident_id, "ext_data",
                                     {"IncidentID": workflow.CreateIncident(name="x", kind="T")})
    assert not MessageLog.objects.filter(incident_id=incident_id).exists()


def test_a_queue_no_registered_handler_serves_is_refused_unless_allowed(incident_id):
    with pytest.raises(CommandError, match=r"'ext_dat'.*--allow-unregistered-queue"):
        call_command("send_message", incident_id, "ext_dat", "{}", stdout=StringIO())
    with pytest.raises(QueueNameError, match="reserved"):
        interventions.inject_message(incident_id, "_Cleanup", {}, allow_unregistered_queue=True)
    out = StringIO()
    call_command("send_message", incident_id, "elsewhere", "{}", "--allow-unregistered-queue",
                 stdout=out)
    assert MessageLog.objects.get(incident_id=incident_id).destination == "elsewhere"


def test_the_admin_form_sends_as_the_user_and_refuses_others_with_403(transactional_db, broker,
                                                                        incident_id):
    page = reverse("admin:incidents_incident_change", args=[incident_id])
    url = reverse("admin:incidents_incident_inject", args=[incident_id])
    viewer = staff("viewer", "view_incident")
    assert "wf-inject" not in viewer.get(page).content.decode()
    assert viewer.post(url, {"queue": "ext_data", "message": "{}"}).status_code == 403

    injector = staff("erin", "view_incident", "inject_message")
    html = injector.get(page).content.decode()
    assert 'id="wf-inject"' in html and '<option value="ext_data">' in html
    assert "_Cleanup" not in html.split('id="wf-inject"')[1].split("</details>")[0]
    refused = injector.post(url, {"queue": "ext_data", "message": '{"values": [NaN]}'})
    assert refused.status_code == 200 and "message[&#x27;values&#x27;][0] is nan" in \
        refused.content.decode()
    response = injector.post(url, {"queue": "ext_data", "message": '{"values": [2, 3]}',
                                   "reason": "from the console"})
    assert response.status_code == 302 and response["Location"] == page
    row = MessageLog.objects.get(incident_id=incident_id)
    assert (row.originator, row.body["values"]) == ("operator:erin (admin)", [2, 3])
    assert audit.history(incident_id)[0].reason == "from the console"

    operations.cancel_incident(incident_id, by="test")
    assert "wf-inject" not in injector.get(page).content.decode()
    late = injector.post(url, {"queue": "ext_data", "message": "{}"})
    assert late.status_code == 200 and "it is CANCELLED" in late.content.decode()
