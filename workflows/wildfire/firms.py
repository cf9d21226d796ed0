"""Reading hotspot observations from NASA FIRMS CSV files (VIIRS and MODIS active fire data).

FIRMS publishes one row per fire pixel. VIIRS files have `bright_ti4`/`bright_ti5` and a
confidence of l/n/h (low, nominal, high); MODIS files have `brightness`/`bright_t31` and a
confidence of 0-100 (FIRMS maps it to low < 30 <= nominal < 80 <= high). Both have latitude,
longitude, scan, track (pixel size in km), acq_date (YYYY-MM-DD), acq_time (HHMM, UTC),
satellite, instrument, version, frp (fire radiative power, MW) and daynight.

A bad row never stops the reading: it is counted with a reason and skipped. Only a file that
cannot be read, or whose header is not a FIRMS header, raises FirmsFormatError.

    report = read_hotspots("fire_nrt_J1V-C2_123.csv", bbox=(-120.5, 38.1, -119.9, 38.6))
    report.hotspots[0].latitude, report.malformed, report.reasons[:3]
"""
from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REQUIRED = ("latitude", "longitude", "acq_date", "acq_time")
BRIGHTNESS = ("bright_ti4", "brightness")  # VIIRS I-4 band, MODIS channel 21/22
CONFIDENCE_LEVELS = ("low", "nominal", "high")
_VIIRS_CONFIDENCE = {"l": "low", "low": "low", "n": "nominal", "nominal": "nominal",
                     "h": "high", "high": "high"}
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
MAX_REASONS = 5


class FirmsFormatError(ValueError):
    """The file cannot be read as FIRMS CSV at all (missing file, no FIRMS header)."""


@dataclass(frozen=True)
class Hotspot:
    """One fire pixel. `acquired` is "YYYY-MM-DDTHH:MMZ"; confidence is low/nominal/high."""

    latitude: float
    longitude: float
    brightness: float
    scan: float
    track: float
    acquired: str
    satellite: str
    instrument: str
    confidence: str
    frp: float
    daynight: str

    @property
    def key(self) -> str:
        """Identifies one observation across files (FIRMS downloads overlap in time)."""
        return f"{self.latitude:.5f},{self.longitude:.5f},{self.acquired},{self.satellite}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Hotspot:
        return cls(**data)


@dataclass
class ReadReport:
    """What reading a file gave: the usable hotspots and why the other rows were left out."""

    path: str
    rows: int = 0
    hotspots: list[Hotspot] = field(default_factory=list)
    malformed: int = 0
    reasons: list[str] = field(default_factory=list)  # the first MAX_REASONS
    outside: int = 0
    low_confidence: int = 0

    def summary(self) -> str:
        return (f"{self.rows} rows: {len(self.hotspots)} usable, {self.outside} outside the bbox, "
                f"{self.low_confidence} below the confidence threshold, {self.malformed} malformed")


def read_hotspots(path: str | Path, bbox: tuple[float, float, float, float],
                  min_confidence: str = "low") -> ReadReport:
    """Read a FIRMS CSV file; keep the rows inside `bbox` (min_lon, min_lat, max_lon, max_lat)
    at or above `min_confidence`."""
    try:
        with open(path, newline="", encoding="utf-8-sig", errors="replace") as stream:
            return parse_hotspots(stream, bbox, min_confidence, name=str(path))
    except OSError as exc:
        raise FirmsFormatError(f"cannot read hotspot file {str(path)!r}: {exc.strerror or exc}; "
                               "give the path of a FIRMS CSV file the workers can read") from exc


def parse_hotspots(lines: Iterable[str], bbox: tuple[float, float, float, float],
                   min_confidence: str = "low", name: str = "<lines>") -> ReadReport:
    """Parse FIRMS CSV text (an open file or a list of lines); see read_hotspots()."""
    if min_confidence not in CONFIDENCE_LEVELS:
        raise ValueError(f"min_confidence {min_confidence!r} must be one of {CONFIDENCE_LEVELS}")
    threshold = CONFIDENCE_LEVELS.index(min_confidence)
    report = ReadReport(path=name)
    rows = _rows(csv.reader(lines), report)
    header = next(rows, None)
    if header is None:
        raise FirmsFormatError(f"{name!r} is empty; expected a FIRMS CSV header "
                               f"({', '.join(REQUIRED)}, bright_ti4 or brightness, ...)")
    columns = [h.strip().lower() for h in header[1]]
    missing = [c for c in REQUIRED if c not in columns]
    if not any(b in columns for b in BRIGHTNESS):
        missing.append(" or ".join(BRIGHTNESS))
    if missing:
        raise FirmsFormatError(f"{name!r} is not a FIRMS CSV file: its header lacks "
                               f"{', '.join(missing)}; download the CSV from FIRMS (VIIRS or MODIS)")
    min_lon, min_lat, max_lon, max_lat = bbox
    for number, values in rows:
        report.rows += 1
        if len(values) != len(columns):
            _malformed(report, number, f"{len(values)} fields, the header has {len(columns)}")
            continue
        try:
            hotspot = _hotspot(dict(zip(columns, values, strict=True)))
        except ValueError as exc:
            _malformed(report, number, str(exc))
            continue
        if not (min_lon <= hotspot.longitude <= max_lon and min_lat <= hotspot.latitude <= max_lat):
            report.outside += 1
        elif CONFIDENCE_LEVELS.index(hotspot.confidence) < threshold:
            report.low_confidence += 1
        else:
            report.hotspots.append(hotspot)
    return report


def _rows(reader: Iterator[list[str]], report: ReadReport) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of the non-blank rows; a line the csv module rejects (a NUL byte,
    an overlong field) is reported malformed and skipped."""
    while True:
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            report.rows += 1
            _malformed(report, reader.line_num, f"unreadable CSV: {exc}")  # type: ignore[attr-defined]
            continue
        if any(v.strip() for v in values):
            yield reader.line_num, values  # type: ignore[attr-defined]


def _malformed(report: ReadReport, line: int, reason: str) -> None:
    report.malformed += 1
    if len(report.reasons) < MAX_REASONS:
        report.reasons.append(f"line {line}: {reason}")


def _hotspot(row: dict[str, str]) -> Hotspot:
    latitude = _number(row, "latitude", -90, 90)
    longitude = _number(row, "longitude", -180, 180)
    brightness_column = "bright_ti4" if "bright_ti4" in row else "brightness"
    return Hotspot(
        latitude=latitude, longitude=longitude,
        brightness=_number(row, brightness_column, 0, 1000, default=math.nan),
        scan=_number(row, "scan", 0.01, 20, default=0.375),
        track=_number(row, "track", 0.01, 20, default=0.375),
        acquired=_acquired(row["acq_date"].strip(), row["acq_time"].strip()),
        satellite=row.get("satellite", "").strip(),
        instrument=row.get("instrument", "").strip(),
        confidence=_confidence(row.get("confidence", "").strip()),
        frp=_number(row, "frp", 0, 100_000, default=0.0),
        daynight=row.get("daynight", "").strip(),
    )


def _number(row: dict[str, str], column: str, low: float, high: float,
            default: float | None = None) -> float:
    text = row.get(column, "").strip()
    if not text and default is not None:
        return default
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{column} {text!r} is not a number") from None
    if not (low <= value <= high):  # also refuses nan
        raise ValueError(f"{column} {value} is outside [{low}, {high}]")
    return value


def _acquired(date: str, time: str) -> str:
    if not _DATE.match(date):
        raise ValueError(f"acq_date {date!r} is not YYYY-MM-DD")
    if not time.isdigit() or len(time) > 4:
        raise ValueError(f"acq_time {time!r} is not HHMM")
    hhmm = time.zfill(4)  # FIRMS sometimes drops leading zeros: 912 is 09:12
    if int(hhmm[:2]) > 23 or int(hhmm[2:]) > 59:
        raise ValueError(f"acq_time {time!r} is not a time of day (HHMM)")
    month, day = int(date[5:7]), int(date[8:10])
    if not (1 <= month <= 12 and 1 <= day <= 31):
        raise ValueError(f"acq_date {date!r} is not a date")
    return f"{date}T{hhmm[:2]}:{hhmm[2:]}Z"


def _confidence(text: str) -> str:
    """VIIRS l/n/h, or a MODIS percentage mapped as FIRMS does."""
    level = _VIIRS_CONFIDENCE.get(text.lower())
    if level:
        return level
    if text.isdigit() and 0 <= int(text) <= 100:
        percent = int(text)
        return "low" if percent < 30 else "nominal" if percent < 80 else "high"
    raise ValueError(f"confidence {text!r} is neither l/n/h (VIIRS) nor 0-100 (MODIS)")
