"""The management commands: output and every bad input."""
from __future__ import annotations

import uuid
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from incidents import workflow
from incidents.models import Incident, IncidentStatus, MessageLog, MessageStatus
from incidents.testing import run_until_idle

pytestmark = pytest.mark.usefixtures("broker")


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_create_incident_by_kind_alone_starts_its_workflow(transactional_db):
    incident_id = run("create_incident", "--name", "sort", "--kind", "QUICKSORT",
                      "--parameters", '{"numbers": [3, 1, 2, 1]}').strip()
    incident = Incident.objects.get(pk=incident_id)
    assert (incident.name, incident.kind, incident.parameters) == (
        "sort", "QUICKSORT", {"numbers": [3, 1, 2, 1]})
    first = MessageLog.objects.get(incident_id=incident_id)
    assert (first.destination, first.body["parameters"]) == ("quicksort_start", {"numbers": [3, 1, 2, 1]})
    run_until_idle()
    assert Incident.objects.get(pk=incident_id).status == IncidentStatus.COMPLETE
    from workflows import quicksort

    assert quicksort.sorted_result(incident_id) == [1, 1, 2, 3]


def test_create_incident_with_a_queue_and_message_sends_that_message(transactional_db):
    incident_id = run("create_incident", "--name", "n", "--kind", "ANY", "--date",
                      "2026-07-01T10:00:00+00:00", "--queue", "probe_chain",
                      "--message", '{"left": 2}').strip()
    first = MessageLog.objects.get(incident_id=incident_id)
    assert (first.destination, first.body["left"]) == ("probe_chain", 2)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--kind", "NOPE"], "kind 'NOPE' has no entry queue (known kinds: DUMMY_INCIDENT, "),
        (["--kind", "QUICKSORT", "--parameters", "{bad"], "--parameters: not valid JSON"),
        (["--kind", "QUICKSORT", "--parameters", "[1]"], "is JSON but not an object"),
        (["--kind", "K", "--message", "{}"], "--message needs --queue"),
        (["--kind", "K", "--queue", "_Cleanup"], "reserved"),
        (["--kind", "QUICKSORT", "--date", "soon"], "ISO 8601"),
        (["--kind", "QUICKSORT", "--upper-left", "38.6/-120.5"], "both corners"),
        (["--kind", "QUICKSORT", "--duration", "a day"], "duration 'a day'"),
    ],
)
def test_create_incident_refuses_bad_input_and_stores_nothing(transactional_db, args, says):
    with pytest.raises(CommandError, match=says.replace("(", r"\(").replace("[", r"\[")):
        run("create_incident", "--name", "n", *args)
    assert not Incident.objects.exists() and not MessageLog.objects.exists()


def test_list_incidents_shows_each_incident_with_message_counts(incident_id):
    workflow.send(message={"IncidentID": incident_id, "left": 0}, queue="probe_chain")
    workflow.FlushMessages()
    other = workflow.CreateIncident(name="other one", kind="FLOOD")
    output = run("list_incidents")
    assert incident_id in output and other in output and "SENT=1" in output
    filtered = run("list_incidents", "--kind", "FLOOD")
    assert other in filtered and incident_id not in filtered
    assert incident_id in run("list_incidents", "--status", "pending")
    assert "(no incidents)" in run("list_incidents", "--status", "KILLED")


def test_create_and_list_incidents_with_the_originals_owner_area_and_duration(transactional_db):
    incident_id = run("create_incident", "--name", "Ridge fire", "--kind", "ANY", "--queue",
                      "probe_chain", "--user-id", "alice", "--upper-left", "38.6/-120.5",
                      "--lower-right", "38.1/-119.9", "--duration", "24").strip()
    incident = Incident.objects.get(pk=incident_id)
    assert (incident.owner, incident.upper_left_latlong, incident.lower_right_latlong,
            incident.duration) == ("alice", "38.6/-120.5", "38.1/-119.9", 24.0)
    workflow.CreateIncident(name="bob's", kind="ANY", user_id="bob")
    listed = run("list_incidents", "--owner", "alice")
    assert incident_id in listed and "bob's" not in listed
    assert "alice" in listed and "area=38.6/-120.5..38.1/-119.9" in listed and "duration=24" in listed


def test_list_incidents_refuses_an_unknown_status(transactional_db):
    with pytest.raises(CommandError, match="is not a status; use one of PENDING"):
        run("list_incidents", "--status", "DONE")


def test_cancel_incident_records_reason_and_operator(incident_id):
    assert f"cancelled {incident_id}" in run("cancel_incident", incident_id, "--reason", "drill over")
    incident = Incident.objects.get(pk=incident_id)
    assert (incident.status, incident.comment) == (IncidentStatus.CANCELLED, "drill over")
    assert "command line" in incident.ended_by and incident.completed_at


@pytest.mark.parametrize(("incident", "says"), [("nope", "is not a UUID"),
                                                (str(uuid.uuid4()), "no incident has IncidentID")])
def test_cancel_incident_refuses_bad_ids(transactional_db, incident, says):
    with pytest.raises(CommandError, match=says):
        run("cancel_incident", incident)


def test_cancelling_an_ended_incident_fails(incident_id):
    run("cancel_incident", incident_id)
    with pytest.raises(CommandError, match="had already ended"):
        run("cancel_incident", incident_id)


def test_kill_incidents_kills_every_live_incident_and_stops_its_messages(incident_id):
    workflow.send(message={"IncidentID": incident_id, "left": 5}, queue="probe_chain")
    workflow.FlushMessages()
    done = workflow.CreateIncident(name="done", kind="TEST")
    workflow.Complete(done)
    workflow.FlushMessages()
    dry = run("kill_incidents", "--dry-run")
    assert f"would kill {incident_id}" in dry and done not in dry
    assert Incident.objects.get(pk=incident_id).status == IncidentStatus.PENDING
    output = run("kill_incidents", "--reason", "evacuation")
    assert f"{incident_id} killed (1 message(s) stopped)" in output and "1 incident(s) killed" in output
    incident = Incident.objects.get(pk=incident_id)
    assert (incident.status, incident.comment) == (IncidentStatus.KILLED, "evacuation")
    chain = MessageLog.objects.get(incident_id=incident_id, destination="probe_chain")
    assert chain.status == MessageStatus.NOT_PROCESSED and "killed" in chain.comment
    assert Incident.objects.get(pk=done).status == IncidentStatus.COMPLETE
    run_until_idle()  # the chain message is dropped, the forced cleanup runs
    assert Incident.objects.get(pk=incident_id).cleaned_at is not None
    assert MessageLog.objects.get(pk=chain.pk).status == MessageStatus.NOT_PROCESSED


def test_kill_incidents_by_kind_and_by_id(transactional_db):
    flood = workflow.CreateIncident(name="f", kind="FLOOD")
    fire = workflow.CreateIncident(name="w", kind="WILDFIRE")
    assert "1 incident(s) killed" in run("kill_incidents", "--kind", "FLOOD")
    assert Incident.objects.get(pk=fire).status == IncidentStatus.PENDING
    assert f"{fire} killed" in run("kill_incidents", fire)
    assert {i.status for i in Incident.objects.filter(pk__in=[flood, fire])} == {"KILLED"}


@pytest.mark.parametrize(("args", "says"), [(["nope"], "is not a UUID"),
                                            (["--kind", "K", str(uuid.uuid4())], "not both"),
                                            ([str(uuid.uuid4())], "no incident has IncidentID"),
                                            (["--dry-run", "bad-id"], "is not a UUID")])
def test_kill_incidents_refuses_bad_input(transactional_db, args, says):
    with pytest.raises(CommandError, match=says):
        run("kill_incidents", *args)


def test_every_command_exits_non_zero_with_a_clear_message_on_bad_input(transactional_db):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "manage.py", "cancel_incident", "not-an-id"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "CommandError: cancel: IncidentID 'not-an-id' is not a UUID" in result.stderr
