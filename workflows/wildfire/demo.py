"""`make demo WORKFLOW=wildfire`: the synthetic first pass over its region, one map."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from incidents import workflow

from . import KIND, synthetic
from .figure import figure_size
from .handlers import MAP, START, SUMMARY
from .params import MAX_MAP_WIDTH, MIN_MAP_WIDTH


def start_demo(size: int) -> tuple[str, dict[str, Any]]:
    """Write the synthetic FIRMS file under var/demo/wildfire/ and start an incident on it
    with a `size`-pixel-wide map; ValueError for a size outside 64..4096."""
    from django.conf import settings

    if isinstance(size, bool) or not isinstance(size, int) or not (
            MIN_MAP_WIDTH <= size <= MAX_MAP_WIDTH):
        raise ValueError(f"SIZE {size!r} is the map's width in pixels; give a whole "
                         f"number from {MIN_MAP_WIDTH} to {MAX_MAP_WIDTH}")
    directory = Path(settings.VAR_DIR) / "demo" / "wildfire"
    hotspots = next(p for p in synthetic.write(directory) if p.name == "viirs_pass1.csv")
    parameters = {"bbox": list(synthetic.REGION), "hotspots": str(hotspots), "map_width": size}
    incident_id = workflow.CreateIncident(name=f"wildfire demo, {parameters['map_width']} px map",
                                          kind=KIND, parameters=parameters)
    workflow.send(message={"IncidentID": incident_id, "parameters": parameters}, queue=START)
    workflow.FlushMessages()
    return incident_id, parameters


def check_demo(incident_id: str, parameters: dict[str, Any]) -> str:
    """Say where the map is; raise ValueError if it or its summary is missing or wrong."""
    from PIL import Image

    try:
        with workflow.OpenResult(incident_id, MAP) as stored, Image.open(stored) as image:
            size = image.size
        with workflow.OpenResult(incident_id, SUMMARY) as stored:
            summary = json.loads(stored.read())
    except (LookupError, OSError, ValueError) as exc:
        raise ValueError(f"wildfire: no map or summary for incident {incident_id}: {exc}") from exc
    expected = figure_size(parameters["bbox"], parameters["map_width"], summary["title"])
    if size != expected:
        raise ValueError(f"wildfire: {MAP} is {size[0]} x {size[1]}, expected {expected[0]} x "
                         f"{expected[1]}")
    names = [c["name"] for c in summary["clusters"]]
    seen = [name for name, _ in summary["results_seen"]]
    if not names or sorted(seen) != sorted(names):
        raise ValueError(f"wildfire: the merge saw results {seen} for clusters {names}; "
                         "expected each cluster once")
    return (f"drew a {size[0]} x {size[1]} map of {len(names)} clusters ({summary['hotspots']} "
            f"hotspots, {summary['burnt_km2']} km2 simulated burnt), the results {MAP!r} and "
            f"{SUMMARY!r} of incident {incident_id}: see them on the incident's page in the "
            f"admin (make serve, /admin/incidents/incident/{incident_id}/change/)")
