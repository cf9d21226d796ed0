"""The wildfire workflow's handlers and their wiring (the design is in the package docstring).

Persisted state, per incident:
- key "parameters" (wildfire_start): the validated parameters;
- key "passes" (wildfire_ingest): per pass, its new hotspots and every cluster (members,
  signature, the pass whose simulation is current);
- key "plans" (wildfire_ingest, read by the merge): per pass, {cluster: pass of its result};
- key "closed" (wildfire_ingest): a close was asked for;
- keys "results", "drawn", "close" (wildfire_merge).

Results (workflow.AttachResult, on the incident's page in the admin; they outlive its
cleanup): "map.png", the latest pass's map, and "summary.json", what it shows.
"""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any

from incidents import workflow

from . import KIND, clusters, figure, firms, maps, spread
from .params import Params, WildfireInputError, data_dirs, resolve_path, validate

logger = logging.getLogger(__name__)

START, INGEST, SIMULATE, MERGE = "wildfire_start", "wildfire_ingest", "wildfire_simulate", "wildfire_merge"
MAP, SUMMARY = "map.png", "summary.json"  # the incident's results


def _base_dir() -> Path:
    """Relative hotspot paths start from the first data directory (default: var/)."""
    return data_dirs()[0]


def parameters_of(incident_id: str) -> Params | None:
    """The parameters wildfire_start validated, or None before it has run."""
    stored = workflow.Persist.Get(incident_id, ignoreOriginator=True, key="parameters")
    return Params.from_json(stored[-1]) if stored else None


@workflow.handler
def wildfire_start_handler(message: dict[str, Any]) -> None:
    """Check the parameters, keep them, and send the first hotspot file to be ingested."""
    incident_id = message["IncidentID"]
    params = validate(message.get("parameters"), base_dir=_base_dir(), incident_id=incident_id)
    workflow.Persist.Put(incident_id, params.to_json(), key="parameters")
    logger.info("wildfire: region %s, hotspots %s, watch=%s", params.bbox, params.hotspots,
                params.watch)
    workflow.send(message={"IncidentID": incident_id, "hotspots": params.hotspots},
                  queue=INGEST, src_tag="start", dest_tag="ingest")


@workflow.atomic
@workflow.handler
def wildfire_ingest_handler(message: dict[str, Any]) -> None:
    """A hotspot file ({"hotspots": path}) becomes a pass: cluster, simulate what changed.
    {"close": true} asks the merge to complete the incident after the passes so far."""
    incident_id = message["IncidentID"]
    params = parameters_of(incident_id)
    if params is None:  # not an error of the incident's: it may not have been started yet
        logger.warning("wildfire: the incident has not started (no parameters from %s yet); "
                       "message %s ignored: send it again once the incident is ACTIVE",
                       START, message.get("MessageID"))
        return
    passes = workflow.Persist.Get(incident_id, key="passes")
    if workflow.Persist.Get(incident_id, key="closed"):
        logger.warning("wildfire: incident closed; message %s ignored", message.get("MessageID"))
        return
    if message.get("close") is True:
        workflow.Persist.Put(incident_id, {"after_pass": len(passes)}, key="closed")
        workflow.send(message={"IncidentID": incident_id, "close": True, "last_pass": len(passes)},
                      queue=MERGE, src_tag="ingest", dest_tag="merge")
        return
    source = message.get("hotspots")
    if not isinstance(source, str) or not source.strip():
        raise WildfireInputError(f"wildfire_ingest: message needs 'hotspots' (a FIRMS CSV path) or "
                                 f"'close': true, not {sorted(message)}",
                                 incident_id=incident_id, queue=INGEST)
    if passes and not params.watch:
        logger.warning("wildfire: more hotspots (%s) for an incident started without "
                       "\"watch\": true; ignored", source)
        return
    try:
        path = resolve_path(source, _base_dir())
    except ValueError as exc:
        raise WildfireInputError(f"wildfire_ingest: 'hotspots' {exc}", incident_id=incident_id,
                                 queue=INGEST) from None
    ingest_pass(incident_id, params, passes, path)


def ingest_pass(incident_id: str, params: Params, passes: list[dict[str, Any]], source: Path) -> None:
    number = len(passes) + 1
    snapshot = workflow.IncidentDir(incident_id) / "hotspots" / f"pass-{number:03d}.csv"
    snapshot.parent.mkdir(exist_ok=True)
    try:  # a snapshot: the file at its source may be replaced by the next download
        shutil.copyfile(source, snapshot)
        report = firms.read_hotspots(snapshot, params.bbox, params.min_confidence)
    except (OSError, firms.FirmsFormatError) as exc:
        raise WildfireInputError(f"hotspot file {str(source)!r}: {exc}", incident_id=incident_id,
                                 queue=INGEST) from exc
    logger.info("wildfire pass %d: %s: %s", number, source, report.summary())
    if report.malformed:
        logger.warning("wildfire pass %d: %d malformed rows in %s, first: %s", number,
                       report.malformed, source, "; ".join(report.reasons))
    if not report.hotspots:
        raise WildfireInputError(
            f"hotspot file {str(source)!r} has no usable row ({report.summary()}"
            + (f"; first problems: {'; '.join(report.reasons)}" if report.reasons else "")
            + f"); check that it is FIRMS data for the region {list(params.bbox)}",
            incident_id=incident_id, queue=INGEST)

    known = [firms.Hotspot.from_json(h) for p in passes for h in p["new"]]
    seen = {h.key for h in known}
    new = []
    for hotspot in report.hotspots:
        if hotspot.key not in seen:
            seen.add(hotspot.key)
            new.append(hotspot)
    if not new:
        logger.info("wildfire pass %d: no new hotspots; the map stands", number)
        return
    every = known + new
    labels = clusters.link_clusters([h.longitude for h in every], [h.latitude for h in every],
                                    params.link_km)
    previous = passes[-1]["clusters"] if passes else {}
    named, next_number = clusters.name_clusters(
        {name: c["members"] for name, c in previous.items()}, clusters.groups(labels),
        passes[-1]["next_number"] if passes else 1)
    current, changed = {}, []
    for name, members in named.items():
        signature = clusters.signature(every[i].key for i in members)
        if name in previous and previous[name]["signature"] == signature:
            current[name] = previous[name]
        else:
            current[name] = {"members": members, "signature": signature, "sim_pass": number}
            changed.append(name)
    workflow.Persist.Put(incident_id, {"pass": number, "source": str(source),
                                       "new": [h.to_json() for h in new], "clusters": current,
                                       "next_number": next_number}, key="passes")
    workflow.Persist.Put(incident_id, {"pass": number, "changed": changed,
                                       "clusters": {n: c["sim_pass"] for n, c in current.items()}},
                         key="plans")
    logger.info("wildfire pass %d: %d new hotspots, %d clusters, simulating %s", number, len(new),
                len(current), ", ".join(changed))
    for name in changed:
        members = current[name]["members"]
        workflow.send(message={
            "IncidentID": incident_id, "pass": number, "cluster": name,
            "signature": current[name]["signature"],
            "seed": seed_for(params.seed, current[name]["signature"]),
            "hotspots": [[every[i].longitude, every[i].latitude, every[i].scan, every[i].track]
                         for i in members],
            "model": {"cell_m": params.cell_m, "steps": params.steps,
                      "wind_speed": params.wind_speed, "wind_from": params.wind_from},
        }, queue=SIMULATE, src_tag="ingest", dest_tag=f"simulate {name} pass {number}")


def seed_for(seed: int, signature: str) -> int:
    """The model's seed for one cluster: the same hotspots give the same simulation."""
    return int(hashlib.sha256(f"{seed}:{signature}".encode()).hexdigest()[:8], 16)


@workflow.handler
def wildfire_simulate_handler(message: dict[str, Any]) -> None:
    """Spread fire from one cluster's hotspots; send the burnt cells to the merge."""
    model = message["model"]
    points = [spread.Point(*h) for h in message["hotspots"]]
    result = spread.simulate(points, cell_m=model["cell_m"], steps=model["steps"],
                             wind_speed=model["wind_speed"], wind_from=model["wind_from"],
                             seed=message["seed"])
    logger.info("wildfire pass %d: cluster %s, %d hotspots, %.2f km2 burnt after %d steps",
                message["pass"], message["cluster"], len(points), result.burnt_km2, result.steps_run)
    workflow.send(message={
        "IncidentID": message["IncidentID"], "pass": message["pass"], "cluster": message["cluster"],
        "signature": message["signature"], "hotspots": [h[:2] for h in message["hotspots"]],
        "result": result.to_json(),
    }, queue=MERGE, src_tag=f"simulate {message['cluster']} pass {message['pass']}", dest_tag="merge")


@workflow.atomic
@workflow.handler
def wildfire_merge_handler(message: dict[str, Any]) -> None:
    """Keep each cluster's result; when a pass has all its results, draw its map. Complete
    after the first map, or (watching) after a close once the passes before it are drawn."""
    incident_id = message["IncidentID"]
    if message.get("close"):
        workflow.Persist.Put(incident_id, {"last_pass": message["last_pass"]}, key="close")
    else:
        workflow.Persist.Put(incident_id, {k: message[k] for k in (
            "pass", "cluster", "signature", "hotspots", "result")}, key="results")
    results = workflow.Persist.Get(incident_id, key="results")
    latest = {(r["cluster"], r["pass"]): r for r in results}
    last_drawn = max((d["pass"] for d in workflow.Persist.Get(incident_id, key="drawn")), default=0)
    complete = [plan for plan in workflow.Persist.Get(incident_id, ignoreOriginator=True, key="plans")
                if plan["pass"] > last_drawn
                and all((name, sim_pass) in latest for name, sim_pass in plan["clusters"].items())]
    params = parameters_of(incident_id)
    assert params is not None  # the plans come after wildfire_start kept them
    if complete:
        plan = complete[-1]  # the newest: an older pass completing late is not drawn
        draw(incident_id, params, plan, [latest[item] for item in plan["clusters"].items()], results)
        workflow.Persist.Put(incident_id, {"pass": plan["pass"]}, key="drawn")
        last_drawn = plan["pass"]
        if not params.watch:
            workflow.Complete(incident_id)
            return
    close = workflow.Persist.Get(incident_id, key="close")
    if close and last_drawn >= close[-1]["last_pass"]:
        logger.info("wildfire: closed after pass %d", last_drawn)
        workflow.Complete(incident_id)


def draw(incident_id: str, params: Params, plan: dict[str, Any], shown: list[dict[str, Any]],
         results: list[dict[str, Any]]) -> Path:
    """Draw the pass's map into the scratch directory; attach it and a summary as the
    incident's results (replacing the previous pass's)."""
    number = plan["pass"]
    hotspots = [tuple(h) for r in shown for h in r["hotspots"]]
    burnt_km2 = sum(r["result"]["burnt_km2"] for r in shown)
    labels = [(r["cluster"], *_centroid(r["hotspots"])) for r in shown]
    title = (f"{KIND} {incident_id[:8]} pass {number}: {len(shown)} clusters, "
             f"{len(hotspots)} hotspots, {burnt_km2:.1f} km2 simulated burnt")
    image = figure.draw_figure(params.bbox, params.map_width, hotspots,
                               [r["result"] for r in shown], labels, title=title)
    scratch = workflow.IncidentDir(incident_id)
    drawn = maps.save_png(image, scratch / "maps" / f"pass-{number:03d}.png")
    workflow.AttachResult(incident_id, MAP, drawn.read_bytes(), title=f"Map after pass {number}")
    summary = {
        "incident": incident_id, "pass": number, "map": MAP, "scratch_map": str(drawn),
        "scratch_files": sorted(str(p.relative_to(scratch)) for p in scratch.rglob("*") if p.is_file()),
        "title": title, "size": list(image.size),
        "map_size": list(maps.map_size(params.bbox, params.map_width)),
        "bbox": list(params.bbox), "hotspots": len(hotspots),
        "burnt_km2": round(burnt_km2, 3), "changed": plan["changed"],
        "clusters": [{"name": r["cluster"], "sim_pass": r["pass"], "signature": r["signature"],
                      "hotspots": len(r["hotspots"]), "burnt_km2": r["result"]["burnt_km2"],
                      "steps_run": r["result"]["steps_run"]} for r in shown],
        "results_seen": [[r["cluster"], r["pass"]] for r in results],
    }
    workflow.AttachResult(incident_id, SUMMARY, json.dumps(summary, indent=1),
                          title=f"What the map after pass {number} shows")
    logger.info("wildfire pass %d: map of %d clusters drawn: %s", number, len(shown), drawn)
    return drawn


def _centroid(points: list[list[float]]) -> tuple[float, float]:
    return (sum(p[0] for p in points) / len(points), sum(p[1] for p in points) / len(points))


def register() -> None:
    workflow.RegisterKind(KIND, queue=START, description=(
        'Wildfire: FIRMS hotspots -> clusters -> spread simulations -> map. Parameters '
        '{"bbox": [min_lon, min_lat, max_lon, max_lat], "hotspots": "<FIRMS CSV path>", '
        '"watch": false} (more in docs/WILDFIRE.md)'))
    workflow.RegisterHandler(handler=wildfire_start_handler, queue=START)
    workflow.RegisterHandler(handler=wildfire_ingest_handler, queue=INGEST)
    workflow.RegisterHandler(handler=wildfire_simulate_handler, queue=SIMULATE)
    workflow.RegisterHandler(handler=wildfire_merge_handler, queue=MERGE)
