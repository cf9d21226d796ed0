"""Message contracts: RegisterHandler(schema=...), checked at send() and on delivery."""
from __future__ import annotations

import pytest

from incidents import workflow
from incidents.checks import destinations_have_handlers, handlers_registered_once
from incidents.engine import dispatch, registry
from incidents.engine.runs import Result
from incidents.exceptions import HandlerRegistrationError, MessageError
from incidents.models import Incident, IncidentStatus, MessageLog, MessageStatus
from incidents.processes import WorkerGroup, worker_env
from tests.conftest import TEST_MODULES, ended, wait_until
from tests.workflows import flaky

registry.load_workflow_modules(["tests.workflows.flaky"])

pytestmark = pytest.mark.usefixtures("broker")


def test_send_refuses_a_message_its_queue_schema_refuses_naming_the_field_and_rule(incident_id):
    with pytest.raises(MessageError) as refused:
        workflow.send(message={"IncidentID": incident_id, "size": -5}, queue="contract_sized")
    assert str(refused.value) == ("send(): message['size'] is -5: -5 is less than the minimum "
                                  "of 1 (schema of queue contract_sized, minimum)")
    with pytest.raises(MessageError, match=r"'size' is a required property \(schema of queue "
                                           r"contract_sized, required\)"):
        workflow.send(message={"IncidentID": incident_id}, queue="contract_sized")
    assert not MessageLog.objects.filter(incident_id=incident_id).exists()


def test_a_matching_message_is_sent_and_handled(incident_id):
    message = {"IncidentID": incident_id, "size": 3}
    workflow.send(message=message, queue="contract_sized")
    workflow.FlushMessages()
    assert dispatch.deliver("contract_sized", message).result is Result.COMPLETE


def test_the_schema_sees_the_engine_keys_as_the_handler_does(incident_id):
    strict = {"type": "object", "additionalProperties": False, "required": ["MessageID"],
              "properties": {"IncidentID": {}, "MessageID": {}, "originator": {}, "size": {}}}
    workflow.RegisterHandler(flaky.contract_sized, "contract_strict",
                             schema=strict)
    workflow.send(message={"IncidentID": incident_id, "size": 1}, queue="contract_strict")
    with pytest.raises(MessageError, match=r"Additional properties are not allowed \('extra'"):
        workflow.send(message={"IncidentID": incident_id, "extra": 1}, queue="contract_strict")


def test_a_delivered_message_that_breaks_the_schema_is_logged_error(incident_id, monkeypatch):
    # Sent by a process that does not know the schema (an older version).
    with monkeypatch.context() as old_version:
        old_version.setattr(registry, "_schemas", {})
        message = {"IncidentID": incident_id, "size": "big"}
        workflow.send(message=message, queue="contract_sized")
        workflow.FlushMessages()
    outcome = dispatch.deliver("contract_sized", message)
    assert outcome.result is Result.ERROR
    logged = MessageLog.objects.get(pk=message["MessageID"])
    assert logged.status == MessageStatus.ERROR
    assert logged.comment == ("message['size'] is 'big': 'big' is not of type 'integer' "
                              "(schema of queue contract_sized, type)")
    incident = Incident.objects.get(pk=incident_id)
    assert incident.status == IncidentStatus.ERROR and "'big' is not of type" in incident.comment


@pytest.mark.parametrize(("schema", "fault"), [
    ({"type": "nope"}, "the schema of queue 'contract_bad' is not a valid JSON Schema: "
                       "schema['type']: 'nope' is not valid"),
    ("{}", "schema '{}' of queue 'contract_bad' is a str; give a JSON Schema as a dict"),
])
def test_a_bad_schema_is_refused_at_registration(schema, fault):
    with pytest.raises(HandlerRegistrationError) as refused:
        workflow.RegisterHandler(flaky.contract_sized, "contract_bad",
                                 schema=schema)
    assert fault in str(refused.value)
    assert registry.handler_for("contract_bad") is None


def test_the_system_check_warns_of_a_logged_destination_no_module_registers(incident_id):
    workflow.send(message={"IncidentID": incident_id}, queue="flaky_side")
    workflow.send(message={"IncidentID": incident_id}, queue="renamed_long_ago")
    workflow.FlushMessages()
    warnings = destinations_have_handlers()
    assert [w.id for w in warnings] == ["incidents.W001"]
    assert "queue 'renamed_long_ago' receives messages" in warnings[0].msg


def test_the_system_check_warns_of_a_module_listed_twice_and_a_handler_name_defined_twice(
        settings, monkeypatch):
    settings.WORKFLOW_MODULES = ["workflows.simple", "tests.workflows.flaky", "workflows.simple"]
    monkeypatch.setattr(registry, "_functions_by_name",
                        {k: set(v) for k, v in registry._functions_by_name.items()})

    @workflow.handler
    def flaky_side(message):  # the same name as tests/workflows/flaky.py's handler
        pass

    workflow.RegisterHandler(flaky_side, "contract_twin")
    warnings = {w.msg.split(":")[0]: w.id for w in handlers_registered_once()}
    assert warnings["workflow module 'workflows.simple' is listed 2 times in WORKFLOW_MODULES"] \
        == "incidents.W002"
    assert warnings["handler name 'flaky_side' is defined by 2 functions"] == "incidents.W003"
    assert not any("'tests.workflows.flaky' is listed" in msg for msg in warnings)


@pytest.fixture
def contract_workers(transactional_db, broker):
    modules = f"{TEST_MODULES},tests.workflows.flaky"
    with WorkerGroup(env=worker_env({"WORKFLOW_MODULES": modules})) as group:
        yield group


@pytest.mark.e2e
def test_a_worker_logs_a_message_breaking_its_queue_schema_error(contract_workers, monkeypatch):
    contract_workers.start("contract1")
    incident_id = workflow.CreateIncident(name="old sender", kind="TEST")
    monkeypatch.setattr(registry, "_schemas", {})  # a sender without the schema
    message = {"IncidentID": incident_id, "size": 0}
    workflow.send(message=message, queue="contract_sized")
    workflow.FlushMessages()
    incident = wait_until(lambda: ended(incident_id), what="the incident to fail")
    assert incident.status == IncidentStatus.ERROR
    logged = MessageLog.objects.get(pk=message["MessageID"])
    assert logged.status == MessageStatus.ERROR and logged.comment == (
        "message['size'] is 0: 0 is less than the minimum of 1 (schema of queue "
        "contract_sized, minimum)")
