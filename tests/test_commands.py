"""The management commands: output and every bad input."""
from __future__ import annotations

import logging
import re
import uuid
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from incidents import workflow
from incidents.engine import incidents_db
from incidents.models import Incident, IncidentStatus, MessageLog, MessageStatus
from incidents.testing import run_until_idle

pytestmark = pytest.mark.usefixtures("broker")


def run(*args: str, **options: object) -> str:
    out = StringIO()
    call_command(*args, stdout=out, **options)
    return out.getvalue()


def answer(monkeypatch, reply: str) -> list[str]:
    """Answer the confirmation question with `reply`; the questions asked."""
    asked: list[str] = []

    def fake_input(prompt: str) -> str:
        asked.append(prompt)
        return reply

    monkeypatch.setattr("builtins.input", fake_input)
    return asked


def incident_with_id(incident_id: str, status: str = IncidentStatus.PENDING) -> str:
    Incident.objects.create(id=uuid.UUID(incident_id), name=f"n{incident_id[:4]}", kind="TEST",
                            status=status, incident_date=timezone.now())
    return incident_id


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


def test_cancelling_an_ended_incident_says_so_and_succeeds(incident_id):
    run("cancel_incident", incident_id, "--reason", "first")
    output = run("cancel_incident", incident_id, "--reason", "second")
    assert f"{incident_id} had already ended (CANCELLED); not cancelled" in output
    assert Incident.objects.get(pk=incident_id).comment == "first"


def test_kill_incidents_kills_every_live_incident_and_stops_its_messages(incident_id):
    workflow.send(message={"IncidentID": incident_id, "left": 5}, queue="probe_chain")
    workflow.FlushMessages()
    done = workflow.CreateIncident(name="done", kind="TEST")
    workflow.Complete(done)
    workflow.FlushMessages()
    dry = run("kill_incidents", "--all", "--dry-run")
    assert f"would kill {incident_id}" in dry and done not in dry
    assert Incident.objects.get(pk=incident_id).status == IncidentStatus.PENDING
    output = run("kill_incidents", "--all", "--noinput", "--reason", "evacuation")
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
    assert "1 incident(s) killed" in run("kill_incidents", "--all", "--kind", "FLOOD", "--noinput")
    assert Incident.objects.get(pk=fire).status == IncidentStatus.PENDING
    assert f"{fire} killed" in run("kill_incidents", fire, "--no-input")
    assert {i.status for i in Incident.objects.filter(pk__in=[flood, fire])} == {"KILLED"}


@pytest.mark.parametrize(("args", "says"), [(["nope"], "is not a UUID"),
                                            (["--kind", "K", str(uuid.uuid4())], "not both"),
                                            (["--all", str(uuid.uuid4())], "not both"),
                                            ([], "give the ids .* or --all"),
                                            (["--kind", "K"], "give the ids .* or --all"),
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


def test_kill_incidents_asks_first_and_kills_nothing_unless_the_answer_is_yes(transactional_db,
                                                                             monkeypatch):
    ids = [workflow.CreateIncident(name=f"fire {n}", kind="TEST") for n in range(12)]
    asked = answer(monkeypatch, "n")
    out = StringIO()
    with pytest.raises(CommandError, match="aborted"):
        call_command("kill_incidents", "--all", stdout=out)
    assert "[y/N]" in asked[0] and "Kill 12 incident(s)?" in asked[0]
    listed = out.getvalue()
    assert "12 incident(s) would be killed" in listed and ids[0] in listed and "fire 9" in listed
    assert ids[10] not in listed and "... and 2 more" in listed
    assert not Incident.objects.filter(status=IncidentStatus.KILLED).exists()
    answer(monkeypatch, "yes")
    assert "1 incident(s) killed" in run("kill_incidents", ids[0])
    assert Incident.objects.get(pk=ids[0]).status == IncidentStatus.KILLED


def test_kill_incidents_with_noinput_asks_nothing(incident_id, monkeypatch):
    asked = answer(monkeypatch, "n")
    assert "1 incident(s) killed" in run("kill_incidents", "--all", "--noinput")
    assert asked == [] and Incident.objects.get(pk=incident_id).status == IncidentStatus.KILLED


class Records(logging.Handler):
    """Collects what the engine logs (its loggers do not propagate to pytest's caplog)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def text(self) -> str:
        return "\n".join(f"{r.levelname} {r.getMessage()}" for r in self.records)


@pytest.fixture
def engine_log():
    records = Records()
    logging.getLogger("incidents").addHandler(records)
    yield records
    logging.getLogger("incidents").removeHandler(records)


def test_killing_an_ended_incident_says_so_succeeds_and_logs_no_kill(incident_id, engine_log,
                                                                      monkeypatch):
    workflow.Complete(incident_id)
    workflow.FlushMessages()
    answer(monkeypatch, "n")  # nothing live to kill: nothing to ask
    output = run("kill_incidents", incident_id)
    assert f"{incident_id} had already ended (COMPLETE); not killed" in output
    assert "0 incident(s) killed" in output
    assert Incident.objects.get(pk=incident_id).status == IncidentStatus.COMPLETE
    assert "killed by" not in engine_log.text()


@pytest.mark.parametrize("args", [["list_incidents", "--limit", "-1"],
                                  ["list_incidents", "--limit", "0"],
                                  ["dead_letters", "--limit", "-3"],
                                  ["list_incidents", "--limit", "ten"]])
def test_limit_must_be_a_positive_number(transactional_db, args):
    with pytest.raises(CommandError, match="--limit: must be a positive number"):
        run(*args)


def test_commands_take_a_unique_prefix_of_at_least_8_characters_of_an_id(transactional_db):
    one = incident_with_id("12345678-aaaa-4aaa-8aaa-aaaaaaaaaaaa")
    incident_with_id("12345678-bbbb-4bbb-8bbb-bbbbbbbbbbbb")
    assert f"cancelled {one}" in run("cancel_incident", "12345678-AAAA")
    assert Incident.objects.get(pk=one).status == IncidentStatus.CANCELLED
    assert "digraph" in run("incident_graph", "12345678-a")
    with pytest.raises(CommandError, match="'12345678' starts the ids of several incidents "
                                           r"\(12345678-aaaa-.*, 12345678-bbbb-.*\); give more"):
        run("kill_incidents", "12345678", "--noinput")
    with pytest.raises(CommandError, match=re.escape("no incident's id starts with '87654321'; see "
                                                     "`manage.py list_incidents`")):
        run("cancel_incident", "87654321")
    with pytest.raises(CommandError, match="is not a UUID, nor its first 8 or more"):
        run("cancel_incident", "1234567")  # the map shows 8


def test_operators_are_pointed_to_list_incidents_and_handler_code_to_create_incident(
        transactional_db):
    missing = str(uuid.uuid4())
    with pytest.raises(CommandError) as raised:
        run("incident_graph", missing)
    assert "list_incidents" in str(raised.value) and "CreateIncident" not in str(raised.value)
    with pytest.raises(Exception, match=r"create it with CreateIncident\(\)"):
        incidents_db.get(missing, where="send")


def test_create_incident_refuses_a_queue_no_registered_handler_serves(transactional_db):
    with pytest.raises(CommandError, match="--queue 'no_such_queue': no registered handler "
                                           r"serves it \(registered queues: .*probe_chain"):
        run("create_incident", "--name", "n", "--kind", "ANY", "--queue", "no_such_queue")
    assert not Incident.objects.exists()
    incident_id = run("create_incident", "--name", "n", "--kind", "ANY", "--queue",
                      "no_such_queue", "--allow-unregistered-queue").strip()
    assert MessageLog.objects.get(incident_id=incident_id).destination == "no_such_queue"


def test_create_incident_takes_a_registered_kind_in_any_case(transactional_db):
    incident_id = run("create_incident", "--name", "n", "--kind", "quickSort").strip()
    assert Incident.objects.get(pk=incident_id).kind == "QUICKSORT"
    assert MessageLog.objects.get(incident_id=incident_id).destination == "quicksort_start"


def test_commands_print_only_their_result_unless_verbose(transactional_db, engine_log):
    configured = logging.getLogger("incidents").level
    output = run("create_incident", "--name", "quiet", "--kind", "QUICKSORT")
    assert output == f"{Incident.objects.get(name='quiet').pk}\n"
    assert "declared" not in engine_log.text()
    assert logging.getLogger("incidents").level == configured  # restored for whoever logs next
    run("create_incident", "--name", "loud", "--kind", "QUICKSORT", verbosity=2)
    assert "declared: loud (QUICKSORT)" in engine_log.text()
