"""Wildfire response: satellite hotspots -> fire clusters -> spread simulations -> a map.

    Start -> wildfire_start -> wildfire_ingest -> wildfire_simulate (one per changed cluster,
             in parallel) -> wildfire_merge (@atomic: the last result of a pass draws the map)

- wildfire_start checks the incident's parameters (params.py; {"bbox": [min_lon, min_lat,
  max_lon, max_lat], "hotspots": "<FIRMS CSV path>"} are required) and raises a
  WildfireInputError saying what to fix, which ends the incident as ERROR with that reason.
- wildfire_ingest (@atomic, so passes are numbered in order) copies the file into the
  incident's scratch directory (workflow.IncidentDir(id)/hotspots/, the seed's hotspots/),
  reads it (firms.py: rows outside the bbox are ignored, malformed rows are counted and the
  first few reasons logged; a file with no usable row raises, ending the incident as ERROR),
  adds the new hotspots to those of earlier passes, clusters them all (clusters.py) and names
  the clusters after the previous pass's. Only clusters whose hotspots changed are simulated
  again; the others keep their last result.
- wildfire_simulate runs a cellular automaton of fire spread around one cluster (spread.py).
- wildfire_merge files each result with Persist (key="results"); when every cluster of a pass
  has its result it draws the map (maps.py; figure.py adds axes and a legend) into the
  scratch directory and attaches it to the incident as the result "map.png", with
  "summary.json" (what was drawn): workflow.AttachResult, shown on the incident's page.

How the incident ends: without "watch" (the default) it Completes once the first map is drawn.
With {"watch": true} it stays ACTIVE: each {"IncidentID": id, "hotspots": path} sent to
wildfire_ingest is another pass that re-runs the changed clusters and re-draws the map, until
{"IncidentID": id, "close": true} to wildfire_ingest (Completes once the passes before it are
drawn) or an operator's Complete/Cancel. The scratch directory goes with the incident's
cleanup; the results stay. docs/WILDFIRE.md has the details.
"""
from typing import Any

KIND = "WILDFIRE"


def RegisterHandlers() -> None:
    from .handlers import register

    register()


def start_demo(size: int = 800, seed: Any = None) -> tuple[str, dict[str, Any]]:
    """`make demo WORKFLOW=wildfire [SIZE=n]`: the synthetic first pass, an n-pixel-wide map
    (ValueError unless 64 <= n <= 4096)."""
    from .demo import start_demo

    return start_demo(size)


def check_demo(incident_id: str, data: dict[str, Any]) -> str:
    """Return a one-line verdict on the demo's map; raise ValueError if it is wrong."""
    from .demo import check_demo

    return check_demo(incident_id, data)
