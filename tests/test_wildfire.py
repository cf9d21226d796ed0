"""The wildfire workflow: FIRMS hotspots -> clusters -> spread simulations in parallel -> map.

The e2e tests run it on worker processes; the others run it in this process
(run_until_idle) to check what it does with bad input and operators' actions."""
from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from incidents import workflow
from incidents.engine import operations, registry, scratch
from incidents.models import HandlerState, Incident, IncidentStatus, MessageLog, MessageStatus
from incidents.testing import run_until_idle
from workflows import wildfire
from workflows.wildfire import figure, handlers, maps, synthetic
from workflows.wildfire.handlers import INGEST, MAP, SUMMARY

from .conftest import ended, wait_until

registry.load_workflow_modules(["workflows.wildfire"])  # whatever WORKFLOW_MODULES says

DATA = Path(__file__).parent / "data" / "firms"
REGION = list(synthetic.REGION)
MAP_WIDTH = 400


def start(hotspots: str = "viirs_pass1.csv", **parameters) -> str:
    return operations.start_incident(name="Ridge fire", kind=wildfire.KIND, parameters={
        "bbox": REGION, "hotspots": str(DATA / hotspots), "map_width": MAP_WIDTH, **parameters})


def send_to_ingest(incident_id: str, **fields) -> None:
    workflow.send(message={"IncidentID": incident_id, **fields}, queue=INGEST)
    workflow.FlushMessages()


def summary(incident_id: str) -> dict | None:
    """What the latest map shows (attached with it), or None before the first map."""
    try:
        with workflow.OpenResult(incident_id, SUMMARY) as stored:
            return json.loads(stored.read())
    except LookupError:
        return None


def map_bytes(incident_id: str) -> bytes:
    """The latest map, the incident's result MAP."""
    with workflow.OpenResult(incident_id, MAP) as stored:
        return stored.read()


def bodies(incident_id: str, queue: str) -> list[dict]:
    """The handled messages to `queue`, oldest first."""
    return [row.body for row in MessageLog.objects.filter(
        incident_id=incident_id, destination=queue, status=MessageStatus.COMPLETE).order_by("submitted")]


def persisted_results(incident_id: str) -> list[tuple[str, int]]:
    return [(r["cluster"], r["pass"]) for r in workflow.Persist.Get(
        incident_id, ignoreOriginator=True, key="results")]


def assert_is_a_map(incident_id: str) -> None:
    """The latest map: a figure (axes, legend) around a MAP_WIDTH-wide map of the region."""
    shown = summary(incident_id)
    assert shown["map_size"] == list(maps.map_size(REGION, MAP_WIDTH)) == [400, 425]
    with Image.open(io.BytesIO(map_bytes(incident_id))) as image:
        assert list(image.size) == shown["size"] == list(
            figure.figure_size(REGION, MAP_WIDTH, shown["title"]))
        pixels = np.asarray(image.convert("RGB"))
    assert (pixels == maps.BURNT).all(axis=2).sum() > 100
    assert (pixels == maps.HOTSPOT).all(axis=2).any()


# On worker processes


@pytest.mark.e2e
def test_a_wildfire_is_mapped_from_every_cluster_once_and_its_scratch_goes_with_it(workers):
    workers.start("wild", concurrency=2)  # two processes: the simulations run side by side
    incident_id = start()
    incident = wait_until(lambda: ended(incident_id), timeout=90, what="the wildfire map")
    assert incident.status == IncidentStatus.COMPLETE, incident.comment

    assert_is_a_map(incident_id)
    shown = summary(incident_id)
    assert shown["pass"] == 1 and shown["hotspots"] == 29
    assert sorted(c["name"] for c in shown["clusters"]) == ["C1", "C2", "C3"]
    assert sorted(c["hotspots"] for c in shown["clusters"]) == [6, 9, 14]
    # The merge saw each cluster's branch once: in the log, and in what it persisted.
    simulated = [b["cluster"] for b in bodies(incident_id, "wildfire_simulate")]
    merged = [b["cluster"] for b in bodies(incident_id, "wildfire_merge")]
    assert sorted(simulated) == sorted(merged) == ["C1", "C2", "C3"]
    assert sorted(map(tuple, shown["results_seen"])) == [("C1", 1), ("C2", 1), ("C3", 1)]
    log = MessageLog.objects.filter(incident_id=incident_id)
    assert not log.exclude(status=MessageStatus.COMPLETE).exists()
    # The map was drawn in the scratch directory while the incident ran; cleanup removed it
    # (and the persisted state); the attached results stay.
    directory = scratch.root() / incident_id
    assert shown["scratch_map"] == str(directory / "maps" / "pass-001.png")
    assert {"hotspots/pass-001.csv", "maps/pass-001.png"} <= set(shown["scratch_files"])
    assert not directory.exists()
    assert not HandlerState.objects.filter(incident_id=incident_id).exists()


@pytest.mark.e2e
def test_new_hotspots_for_a_watching_incident_rerun_only_the_changed_cluster(workers):
    workers.start("wild", concurrency=2)  # two processes: the simulations run side by side
    incident_id = start(watch=True)
    first = wait_until(lambda: summary(incident_id), timeout=90, what="the first map")
    directory = scratch.root() / incident_id
    # Watching: the incident stays ACTIVE with its scratch directory after the first map.
    assert Incident.objects.get(pk=incident_id).status == IncidentStatus.ACTIVE
    assert (directory / "maps" / "pass-001.png").is_file()
    assert (directory / "hotspots" / "pass-001.csv").is_file()
    wait_until(lambda: len(persisted_results(incident_id)) >= 3, timeout=60,
               what="the first merge to commit")  # it writes the map before its commit
    assert sorted(persisted_results(incident_id)) == [("C1", 1), ("C2", 1), ("C3", 1)]
    first_map = map_bytes(incident_id)

    send_to_ingest(incident_id, hotspots=str(DATA / "viirs_pass2.csv"))
    second = wait_until(lambda: (s := summary(incident_id)) and s["pass"] == 2 and s,
                        timeout=60, what="the second map")
    assert second["changed"] == ["C1"]
    simulated = [(b["cluster"], b["pass"]) for b in bodies(incident_id, "wildfire_simulate")]
    assert sorted(simulated) == [("C1", 1), ("C1", 2), ("C2", 1), ("C3", 1)]
    # The merge writes the map during its run and stores its results when it commits, a
    # moment later: wait for the commit, then check each result is there once.
    wait_until(lambda: ("C1", 2) in persisted_results(incident_id), timeout=60,
               what="the second merge to commit")
    assert sorted(persisted_results(incident_id)) == sorted(simulated)  # each result once
    clusters = {c["name"]: c for c in second["clusters"]}
    assert {name: (c["sim_pass"], c["hotspots"]) for name, c in clusters.items()} == {
        "C1": (2, 22), "C2": (1, 9), "C3": (1, 6)}
    before = {c["name"]: c["signature"] for c in first["clusters"]}
    assert clusters["C2"]["signature"] == before["C2"] and clusters["C1"]["signature"] != before["C1"]
    assert second["hotspots"] == 37 and second["burnt_km2"] != first["burnt_km2"]
    assert map_bytes(incident_id) != first_map
    assert_is_a_map(incident_id)
    assert (directory / "maps" / "pass-002.png").is_file()

    send_to_ingest(incident_id, close=True)
    incident = wait_until(lambda: ended(incident_id), timeout=60, what="the close")
    assert incident.status == IncidentStatus.COMPLETE
    assert not directory.exists() and map_bytes(incident_id)
    log = MessageLog.objects.filter(incident_id=incident_id)
    assert not log.exclude(status=MessageStatus.COMPLETE).exists()


# In this process


local = pytest.mark.usefixtures("broker", "transactional_db")


@pytest.fixture
def workflow_log(monkeypatch, caplog):
    """The workflows' log lines (their logger does not propagate to pytest's)."""
    monkeypatch.setattr(logging.getLogger("workflows"), "propagate", True)
    caplog.set_level(logging.INFO, logger="workflows")
    return caplog


@local
def test_bad_parameters_end_the_incident_with_an_error_that_says_what_to_fix():
    incident_id = operations.start_incident(name="typo", kind=wildfire.KIND, parameters={
        "bbox": [-119.9, 38.1, -120.5, 38.6], "hotspots": "nowhere/firms.csv"})
    run_until_idle(raise_on_error=False)
    incident = Incident.objects.get(pk=incident_id)
    assert incident.status == IncidentStatus.ERROR and incident.cleaned_at
    assert "wildfire_start_handler failed: WildfireInputError" in incident.comment
    assert "[min_lon, min_lat, max_lon, max_lat]" in incident.comment
    assert "'hotspots' 'nowhere/firms.csv': no such file" in incident.comment
    assert not bodies(incident_id, INGEST)


@local
@pytest.mark.parametrize("name, reason", [
    ("no_usable.csv", "has no usable row (8 rows: 0 usable, 2 outside the bbox, 0 below the "
                      "confidence threshold, 6 malformed; first problems: line 2: latitude 'abc'"),
    ("not_firms.csv", "is not a FIRMS CSV file: its header lacks latitude"),
])
def test_a_file_without_usable_hotspots_ends_the_incident_with_a_clear_error(name, reason):
    incident_id = start(name)
    run_until_idle(raise_on_error=False)
    incident = Incident.objects.get(pk=incident_id)
    assert incident.status == IncidentStatus.ERROR and incident.cleaned_at
    assert "wildfire_ingest_handler failed: WildfireInputError" in incident.comment
    assert reason in incident.comment
    assert not bodies(incident_id, "wildfire_simulate")
    # Kept for a Resume after the file is fixed (WORKFLOW_RESUME_RETENTION_HOURS); a Kill
    # gives up on it and removes it.
    assert (scratch.root() / incident_id).exists()
    operations.kill_incident(incident_id, reason="not worth resuming")
    run_until_idle()
    assert not (scratch.root() / incident_id).exists()


@local
def test_malformed_rows_are_logged_and_the_good_rows_are_still_mapped(workflow_log):
    incident_id = start("malformed.csv")
    run_until_idle()
    assert Incident.objects.get(pk=incident_id).status == IncidentStatus.COMPLETE
    warnings = [r.getMessage() for r in workflow_log.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "6 malformed rows in" in warnings[0]
    assert "line 3: latitude 'abc' is not a number; line 5: 10 fields, the header has 14" in warnings[0]
    assert summary(incident_id)["hotspots"] == 6
    assert_is_a_map(incident_id)


@local
def test_an_operators_cancel_ends_a_watching_incident_and_removes_its_scratch():
    incident_id = start(watch=True)
    run_until_idle()
    directory = scratch.root() / incident_id
    assert Incident.objects.get(pk=incident_id).status == IncidentStatus.ACTIVE
    assert (directory / "maps" / "pass-001.png").is_file()
    assert operations.cancel_incident(incident_id, reason="contained")
    run_until_idle()
    incident = Incident.objects.get(pk=incident_id)
    assert incident.status == IncidentStatus.CANCELLED and incident.cleaned_at
    assert not directory.exists() and map_bytes(incident_id)


@local
def test_a_file_with_no_new_hotspots_changes_nothing_and_close_completes_the_incident():
    incident_id = start(watch=True)
    run_until_idle()
    send_to_ingest(incident_id, hotspots=str(DATA / "viirs_pass1.csv"))  # the same download
    run_until_idle()
    assert len(bodies(incident_id, "wildfire_simulate")) == 3 and summary(incident_id)["pass"] == 1
    send_to_ingest(incident_id, close=True)
    send_to_ingest(incident_id, hotspots=str(DATA / "viirs_pass2.csv"))  # after the close
    run_until_idle()
    assert Incident.objects.get(pk=incident_id).status == IncidentStatus.COMPLETE
    assert len(bodies(incident_id, "wildfire_simulate")) == 3 and summary(incident_id)["pass"] == 1


@local
def test_more_hotspots_for_an_incident_that_does_not_watch_are_ignored(workflow_log):
    # The handlers called directly, in order, so the second file comes before the first map.
    incident_id = workflow.CreateIncident(name="Ridge fire", kind=wildfire.KIND)
    parameters = {"bbox": REGION, "hotspots": str(DATA / "viirs_pass1.csv")}
    handlers.wildfire_start_handler({"IncidentID": incident_id, "parameters": parameters})
    handlers.wildfire_ingest_handler({"IncidentID": incident_id, "hotspots": parameters["hotspots"]})
    handlers.wildfire_ingest_handler({"IncidentID": incident_id, "hotspots": str(DATA / "viirs_pass2.csv")})
    plans = workflow.Persist.Get(incident_id, ignoreOriginator=True, key="plans")
    assert [plan["pass"] for plan in plans] == [1]
    assert any('without "watch": true; ignored' in r.getMessage() for r in workflow_log.records)


@local
def test_hotspots_sent_before_the_incident_has_started_are_ignored(workflow_log):
    incident_id = workflow.CreateIncident(name="Ridge fire", kind=wildfire.KIND)
    handlers.wildfire_ingest_handler({"IncidentID": incident_id, "hotspots": str(DATA / "viirs_pass1.csv")})
    assert not workflow.Persist.Get(incident_id, ignoreOriginator=True)
    assert any("has not started" in r.getMessage() for r in workflow_log.records)


def test_the_demo_refuses_a_map_width_outside_64_to_4096_instead_of_changing_it():
    for size in (10, 63, 4097, -5):
        with pytest.raises(ValueError, match=f"SIZE {size} is the map's width in pixels; give a "
                                             "whole number from 64 to 4096"):
            wildfire.start_demo(size)
