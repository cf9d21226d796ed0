"""The original manager's handler code, in its authors' style, on real workers with 4
processes (the embedded default, and RabbitMQ + PostgreSQL in the services pass), repeated
so that a race would show: each incident must end as expected, with correct results."""
from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

from incidents import workflow
from incidents.engine.validation import HEALTH_CHECK_INCIDENT_ID
from incidents.models import Incident, IncidentStatus, MessageLog, MessageStatus
from incidents.processes import WorkerGroup, worker_env
from workflows import quicksort

from ..conftest import TEST_MODULES, ended, wait_until
from . import original_quicksort, original_services

pytestmark = pytest.mark.e2e

MODULES = f"{TEST_MODULES},tests.compat.original_quicksort,tests.compat.original_services"
ROUNDS = 3  # each round races several incidents at once


@pytest.fixture
def four_processes(transactional_db, broker) -> Iterator[WorkerGroup]:
    with WorkerGroup(env=worker_env({"WORKFLOW_MODULES": MODULES})) as group:
        group.start("compat", concurrency=4)
        yield group


def fresh_file(name: str) -> Path:
    """A file the handlers write to, under var/compat, absent to begin with."""
    path = settings.VAR_DIR / "compat" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    return path


def finished(incident_id: str, what: str) -> Incident:
    incident = wait_until(lambda: ended(incident_id), what=what)
    assert isinstance(incident, Incident)
    return incident


def statuses(incident_id: str) -> set[str]:
    return set(MessageLog.objects.filter(incident_id=incident_id)
               .values_list("status", flat=True))


def messages_to(incident_id: str, queue: str) -> int:
    return MessageLog.objects.filter(incident_id=incident_id, destination=queue).count()


def test_the_originals_plain_put_then_get_quicksort_completes_every_time(four_processes):
    for round_number in range(ROUNDS):
        started = {}
        for n in range(2):
            numbers = [random.randint(0, 500) for _ in range(256)]
            result_file = str(fresh_file(f"sorted-{round_number}-{n}.json"))
            started[original_quicksort.submit(numbers, result_file)] = (numbers, result_file)
        # Ours, whose @atomic merge handler has the same function name, in the same worker.
        ours = workflow.CreateIncident("ours", quicksort.KIND)
        ours_numbers = [random.randint(0, 500) for _ in range(100)]
        quicksort.start(ours, ours_numbers)
        workflow.FlushMessages()

        for incident_id, (numbers, result_file) in started.items():
            incident = finished(incident_id, f"round {round_number}: quicksort to complete")
            assert incident.status == IncidentStatus.COMPLETE, incident.comment
            with open(result_file) as f:
                assert json.load(f) == sorted(numbers)
            assert statuses(incident_id) == {MessageStatus.COMPLETE}
            # Each node of the split tree is merged exactly once: one merge message per split.
            assert messages_to(incident_id, original_quicksort.MERGE_QUEUE) == \
                messages_to(incident_id, original_quicksort.SORT_QUEUE)
            assert not incident.states.exists() and not incident.locks.exists()
        assert finished(ours, "our quicksort").status == IncidentStatus.COMPLETE
        assert quicksort.sorted_result(ours) == sorted(ours_numbers)


def call_back(incident_id: str, status: str, **fields: object) -> None:
    """What the original's simulation manager does for each callback: open, send with its
    tag, flush, close."""
    workflow.OpenConnection()
    workflow.send({"IncidentID": incident_id, **fields}, original_services.SIMULATION_QUEUE,
                  providedCaller=status)
    workflow.FlushMessages()
    workflow.CloseConnection()


def test_simulation_callbacks_tagged_with_provided_caller_fan_in_once(four_processes):
    simulations = 6
    for _ in range(ROUNDS):
        report_file = fresh_file("reports.txt")
        incident_id = workflow.CreateIncident(
            "wildfire", "WILDFIRE", user_id="alice", upper_left_latlong="53.38/1.83",
            lower_right_latlong="48.76/11.74", duration=1)
        for simulation in range(simulations):
            call_back(incident_id, "Simulation Running", simulation=simulation)
        results = random.sample(range(1000), simulations)
        for simulation, result in enumerate(results):
            call_back(incident_id, "Simulation Completed", simulation=simulation, result=result,
                      expected=simulations, report_file=str(report_file))

        incident = finished(incident_id, "the callbacks to fan in")
        assert incident.status == IncidentStatus.COMPLETE, incident.comment
        assert report_file.read_text().split("\n") == [" ".join(map(str, sorted(results))), ""]
        assert messages_to(incident_id, original_services.REPORT_QUEUE) == 1
        originators = MessageLog.objects.filter(
            incident_id=incident_id, destination=original_services.SIMULATION_QUEUE
        ).values_list("originator", flat=True)
        assert sorted(set(originators)) == ["Simulation Completed", "Simulation Running"]
        assert (incident.owner, incident.upper_left_latlong, incident.lower_right_latlong,
                incident.duration) == ("alice", "53.38/1.83", "48.76/11.74", 1.0)


def test_check_lock_as_a_try_acquire_lets_one_writer_at_a_time(four_processes):
    tiles = 8
    for _ in range(ROUNDS):
        mosaic = fresh_file("mosaic.txt")
        incident_id = workflow.CreateIncident("mosaic", "MOSQUITO")
        for tile in range(tiles):
            workflow.send({"IncidentID": incident_id, "tile": tile, "tiles": tiles,
                           "mosaic_file": str(mosaic)}, original_services.TILE_QUEUE)
        workflow.FlushMessages()

        incident = finished(incident_id, "every tile to be written")
        assert incident.status == IncidentStatus.COMPLETE, incident.comment
        lines = [line.split() for line in mosaic.read_text().splitlines()]
        # Writers never overlap: each start is followed by the end of the same tile's writer.
        pairs = list(zip(lines[::2], lines[1::2], strict=True))
        assert all(start[0] == "start" and end[0] == "end" and start[1:] == end[1:]
                   for start, end in pairs), lines
        assert sorted(int(start[1]) for start, _ in pairs) == list(range(tiles))


def test_the_originals_health_probe_by_test_incident_name_is_handled_every_time(four_processes):
    reply = fresh_file("health.txt")
    for probe in range(1, 3):  # the first probe's Complete ends the incident; the next reopens it
        message = {"IncidentID": "test_workflow_health", "reply_file": str(reply)}
        message_id = workflow.send(message, original_services.HEALTH_QUEUE)
        workflow.FlushMessages()
        wait_until(lambda sent=message_id: MessageLog.objects.get(pk=sent).status ==
                   MessageStatus.COMPLETE, what=f"health probe {probe} to be handled")
        assert reply.read_text() == "healthy\n" * probe
    incident = Incident.objects.get(pk=HEALTH_CHECK_INCIDENT_ID)
    assert (incident.name, incident.status) == ("test_workflow_health", IncidentStatus.COMPLETE)
