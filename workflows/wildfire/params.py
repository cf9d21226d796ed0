"""The parameters of a WILDFIRE incident: defaults, and validation that says what to fix.

    {"bbox": [-120.5, 38.1, -119.9, 38.6],      # required: min_lon, min_lat, max_lon, max_lat
     "hotspots": "firms/viirs_today.csv",       # required: a FIRMS CSV in WILDFIRE_DATA_DIRS
     "watch": false,          # true: stay ACTIVE for more hotspot files until closed
     "link_km": 2.0,          # hotspots closer than this are one cluster
     "min_confidence": "nominal",                # low | nominal | high
     "wind": {"speed": 5.0, "from": 270.0},     # m/s; degrees clockwise from north
     "cell_m": 250.0,         # cell of the spread model, metres
     "steps": 24,             # steps of the spread model
     "seed": 0,               # seeds the spread model (with each cluster's hotspots)
     "map_width": 800}        # pixels; the height follows the bbox's aspect
"""
from __future__ import annotations

import math
import numbers
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from incidents import workflow

from .firms import CONFIDENCE_LEVELS

EXAMPLE = '{"bbox": [-120.5, 38.1, -119.9, 38.6], "hotspots": "/path/to/firms.csv"}'
MAX_BBOX_DEGREES = 10.0
MIN_MAP_WIDTH, MAX_MAP_WIDTH = 64, 4096  # pixels


class WildfireInputError(workflow.WorkflowError, ValueError):
    """A wildfire incident's parameters or hotspot file cannot be used as given."""


@dataclass(frozen=True)
class Params:
    bbox: tuple[float, float, float, float]
    hotspots: str
    watch: bool = False
    link_km: float = 2.0
    min_confidence: str = "nominal"
    wind_speed: float = 5.0
    wind_from: float = 270.0
    cell_m: float = 250.0
    steps: int = 24
    seed: int = 0
    map_width: int = 800

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Params:
        return cls(**{**data, "bbox": tuple(data["bbox"])})


def validate(parameters: Any, *, base_dir: Path, incident_id: str | None = None) -> Params:
    """Check an incident's parameters; raise WildfireInputError listing every problem.
    A relative `hotspots` path is taken from `base_dir` (the project directory)."""
    problems: list[str] = []
    if not isinstance(parameters, dict):
        raise WildfireInputError(f"wildfire parameters {parameters!r:.80} must be a JSON object "
                                 f"such as {EXAMPLE}", incident_id=incident_id)
    known = {"bbox", "hotspots", "watch", "link_km", "min_confidence", "wind", "cell_m", "steps",
             "seed", "map_width"}
    for name in sorted(set(parameters) - known):
        problems.append(f"unknown parameter {name!r}; the known ones are {', '.join(sorted(known))}")
    bbox = _bbox(parameters.get("bbox"), problems)
    hotspots = _hotspots(parameters.get("hotspots"), base_dir, problems)
    defaults = Params(bbox=(0, 0, 0, 0), hotspots="")
    watch = parameters.get("watch", defaults.watch)
    if not isinstance(watch, bool):
        problems.append(f"'watch' {watch!r} must be true or false")
    confidence = parameters.get("min_confidence", defaults.min_confidence)
    if confidence not in CONFIDENCE_LEVELS:
        problems.append(f"'min_confidence' {confidence!r} must be one of {', '.join(CONFIDENCE_LEVELS)}")
    wind = parameters.get("wind", {})
    if not isinstance(wind, dict) or set(wind) - {"speed", "from"}:
        problems.append(f"'wind' {wind!r} must be an object like {{\"speed\": 5, \"from\": 270}} "
                        "(m/s, and degrees clockwise from north the wind blows from)")
        wind = {}
    params = Params(
        bbox=bbox, hotspots=hotspots, watch=watch is True, min_confidence=str(confidence),
        link_km=_number(parameters, "link_km", defaults.link_km, 0.1, 50, problems),
        wind_speed=_number(wind, "speed", defaults.wind_speed, 0, 40, problems, "wind.speed"),
        wind_from=_number(wind, "from", defaults.wind_from, 0, 360, problems, "wind.from"),
        cell_m=_number(parameters, "cell_m", defaults.cell_m, 30, 5000, problems),
        steps=int(_number(parameters, "steps", defaults.steps, 1, 200, problems, integer=True)),
        seed=int(_number(parameters, "seed", defaults.seed, 0, 2**32 - 1, problems, integer=True)),
        map_width=int(_number(parameters, "map_width", defaults.map_width, MIN_MAP_WIDTH,
                              MAX_MAP_WIDTH, problems, integer=True)),
    )
    if problems:
        raise WildfireInputError("wildfire parameters: " + "; ".join(problems), incident_id=incident_id)
    return params


def _bbox(value: Any, problems: list[str]) -> tuple[float, float, float, float]:
    rule = (f"'bbox' {value!r:.80} must be [min_lon, min_lat, max_lon, max_lat] in degrees, "
            "west to east and south to north")
    if value is None:
        problems.append(f"'bbox' is missing; give the region as [min_lon, min_lat, max_lon, max_lat], "
                        f"e.g. {EXAMPLE}")
        return (0, 0, 0, 0)
    if not (isinstance(value, list | tuple) and len(value) == 4
            and all(_is_number(v) for v in value)):
        problems.append(rule)
        return (0, 0, 0, 0)
    min_lon, min_lat, max_lon, max_lat = (float(v) for v in value)
    if not (-180 <= min_lon < max_lon <= 180 and -90 <= min_lat < max_lat <= 90):
        problems.append(rule + " (longitudes within -180..180, latitudes within -90..90, min < max)")
    elif max(max_lon - min_lon, max_lat - min_lat) > MAX_BBOX_DEGREES:
        problems.append(f"'bbox' {value!r} spans more than {MAX_BBOX_DEGREES:g} degrees; split the "
                        "region into incidents of at most that size")
    return (min_lon, min_lat, max_lon, max_lat)


def _hotspots(value: Any, base_dir: Path, problems: list[str]) -> str:
    if not isinstance(value, str) or not value.strip():
        problems.append(f"'hotspots' {value!r:.80} must be the path of a FIRMS CSV file (VIIRS or "
                        "MODIS, as downloaded from https://firms.modaps.eosdis.nasa.gov)")
        return ""
    try:
        path = resolve_path(value, base_dir)
    except ValueError as exc:
        problems.append(f"'hotspots' {exc}")
        return ""
    if not path.is_file():
        problems.append(f"'hotspots' {value!r}: no such file ({path}); give a path the workers can "
                        f"read, absolute or relative to {base_dir}")
    return str(path)


def data_dirs() -> list[Path]:
    """Where hotspot files may be read from: WILDFIRE_DATA_DIRS (comma-separated), else var/
    and the shipped samples. An incident's parameters must not make workers read any file."""
    from django.conf import settings

    listed = [d.strip() for d in os.environ.get("WILDFIRE_DATA_DIRS", "").split(",") if d.strip()]
    dirs = [Path(d) for d in listed] or [Path(settings.VAR_DIR),
                                         Path(settings.BASE_DIR) / "tests" / "data" / "firms"]
    return [d.expanduser().resolve() for d in dirs]


def resolve_path(value: str, base_dir: Path) -> Path:
    """The file `value` names (relative to `base_dir`); ValueError outside data_dirs()."""
    path = Path(value).expanduser()
    path = (path if path.is_absolute() else base_dir / path).resolve()
    allowed = data_dirs()
    if not any(path.is_relative_to(d) for d in allowed):
        raise ValueError(f"{value!r} is outside the hotspot data directories "
                         f"({', '.join(map(str, allowed))}); put the FIRMS file in one of them "
                         "or list its directory in WILDFIRE_DATA_DIRS")
    return path


def _number(source: dict[str, Any], name: str, default: float, low: float, high: float,
            problems: list[str], label: str | None = None, integer: bool = False) -> float:
    value = source.get(name, default)
    label = label or name
    if not _is_number(value) or (integer and value != int(value)):
        problems.append(f"{label!r} {value!r:.40} must be {'an integer' if integer else 'a number'} "
                        f"from {low:g} to {high:g}")
        return default
    if not (low <= value <= high):
        problems.append(f"{label!r} {value!r} is outside {low:g}..{high:g}")
        return default
    return float(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
