"""Synthetic FIRMS hotspot files for tests and the demo (deterministic: a fixed seed).

    python -m workflows.wildfire.synthetic [DIR]     # default tests/data/firms

writes, for the region REGION (a box of Sierra Nevada foothills):

- viirs_pass1.csv: a VIIRS S-NPP / NOAA-20 pass with three fires (3 clusters at the default
  link distance), two isolated low-confidence detections and four rows outside the region;
- viirs_pass2.csv: the next day: the first fire has grown east (new hotspots within the link
  distance of its edge), three rows repeat the first pass (FIRMS downloads overlap), one row
  is outside the region;
- modis.csv: a few MODIS rows (brightness/bright_t31, confidence 0-100);
- malformed.csv: good rows of one fire mixed with rows FIRMS would never publish;
- no_usable.csv: only broken rows and rows outside the region;
- not_firms.csv: a CSV that is not FIRMS data.

Real FIRMS data is not used: the files only need the format and a plausible geometry.
"""
from __future__ import annotations

import csv
import io
import math
import random
import sys
from pathlib import Path

from .clusters import KM_PER_DEGREE_LAT, KM_PER_DEGREE_LON_EQUATOR

REGION = (-120.5, 38.1, -119.9, 38.6)  # min_lon, min_lat, max_lon, max_lat
SEED = 20240816
VIIRS_COLUMNS = ["latitude", "longitude", "bright_ti4", "scan", "track", "acq_date", "acq_time",
                 "satellite", "instrument", "confidence", "version", "bright_ti5", "frp", "daynight"]
MODIS_COLUMNS = ["latitude", "longitude", "brightness", "scan", "track", "acq_date", "acq_time",
                 "satellite", "instrument", "confidence", "version", "bright_t31", "frp", "daynight"]
# Fires of the first pass: centre (lon, lat) and number of hotspots.
FIRES = [((-120.32, 38.45), 14), ((-120.08, 38.22), 9), ((-119.98, 38.52), 6)]


def _km_to_degrees(lat: float, east_km: float, north_km: float) -> tuple[float, float]:
    return (east_km / (KM_PER_DEGREE_LON_EQUATOR * math.cos(math.radians(lat))),
            north_km / KM_PER_DEGREE_LAT)


def _grow(rng: random.Random, points: list[tuple[float, float]], count: int,
          bearing: tuple[float, float] = (0.0, 360.0)) -> list[tuple[float, float]]:
    """`count` new points, each 0.4-1.2 km from a point already there (so a fire is one
    connected cluster at a link distance of 2 km), in a direction within `bearing` (degrees
    clockwise from north) of it. Points grow from the leading half of the fire."""
    grown: list[tuple[float, float]] = []
    for _ in range(count):
        pool = points + grown
        if bearing != (0.0, 360.0):  # grow from the points furthest along the bearing
            mid = math.radians(sum(bearing) / 2)
            pool = sorted(pool, key=lambda p: -(p[0] * math.sin(mid) + p[1] * math.cos(mid)))
            pool = pool[:max(1, len(pool) // 2)]
        lon, lat = rng.choice(pool)
        distance, angle = rng.uniform(0.4, 1.2), math.radians(rng.uniform(*bearing))
        d_lon, d_lat = _km_to_degrees(lat, distance * math.sin(angle), distance * math.cos(angle))
        grown.append((lon + d_lon, lat + d_lat))
    return grown


def _viirs_row(rng: random.Random, lon: float, lat: float, date: str, time: str,
               confidence: str | None = None) -> list[str]:
    day = 600 <= int(time) < 1800
    return [f"{lat:.5f}", f"{lon:.5f}", f"{rng.uniform(300, 367):.2f}",
            f"{rng.uniform(0.36, 0.6):.2f}", f"{rng.uniform(0.36, 0.7):.2f}", date, time,
            rng.choice(["N", "N20"]), "VIIRS", confidence or rng.choice(["n", "n", "n", "h"]),
            "2.0NRT", f"{rng.uniform(280, 300):.2f}", f"{rng.uniform(1, 60):.2f}",
            "D" if day else "N"]


def _csv(columns: list[str], rows: list[list[str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    return out.getvalue()


def generate() -> dict[str, str]:
    """{file name: CSV text}; the same every time."""
    rng = random.Random(SEED)
    files: dict[str, str] = {}

    fires = []
    first: list[list[str]] = []
    for (lon, lat), count in FIRES:
        points = [(lon, lat), *_grow(rng, [(lon, lat)], count - 1)]
        fires.append(points)
        first += [_viirs_row(rng, x, y, "2024-08-16", rng.choice(["0954", "2118"])) for x, y in points]
    first += [_viirs_row(rng, x, y, "2024-08-16", "0954", confidence="l")
              for x, y in ((-120.45, 38.15), (-120.2, 38.58))]
    first += [_viirs_row(rng, x, y, "2024-08-16", "2118")
              for x, y in ((-121.2, 38.3), (-120.3, 37.9), (-119.5, 38.4), (-120.1, 38.9))]
    files["viirs_pass1.csv"] = _csv(VIIRS_COLUMNS, first)

    east = _grow(rng, fires[0], 8, bearing=(45.0, 135.0))
    second = [_viirs_row(rng, x, y, "2024-08-17", rng.choice(["0936", "2100"])) for x, y in east]
    second += first[:3]  # the overlap of two downloads
    second.append(_viirs_row(rng, -121.0, 38.0, "2024-08-17", "0936"))
    files["viirs_pass2.csv"] = _csv(VIIRS_COLUMNS, second)

    modis = []
    for x, y in fires[1][:4]:
        modis.append([f"{y:.4f}", f"{x:.4f}", f"{rng.uniform(310, 360):.1f}", "1.0", "1.0",
                      "2024-08-16", "1842", rng.choice(["Terra", "Aqua"]), "MODIS",
                      str(rng.choice([25, 55, 90])), "6.1NRT", f"{rng.uniform(285, 300):.1f}",
                      f"{rng.uniform(5, 80):.1f}", "D"])
    files["modis.csv"] = _csv(MODIS_COLUMNS, modis)

    good = [_viirs_row(rng, x, y, "2024-08-16", "0954") for x, y in fires[2]]
    broken = [
        ["abc", *good[0][1:]],                                     # latitude not a number
        good[1][:10],                                              # a truncated line
        [*good[2][:6], "2561", *good[2][7:]],                      # acq_time not a time
        [*good[3][:9], "maybe", *good[3][10:]],                    # unknown confidence
        ["95.00000", *good[4][1:]],                                # latitude out of range
        [*good[5], "extra"],                                       # one field too many
    ]
    files["malformed.csv"] = _csv(VIIRS_COLUMNS, [row for pair in zip(good, broken, strict=True)
                                                  for row in pair])
    files["no_usable.csv"] = _csv(VIIRS_COLUMNS, [*broken, first[-1], first[-2]])
    files["not_firms.csv"] = "station,lat,lon,temperature\nA1,38.2,-120.1,31.5\n"
    return files


def write(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in generate().items():
        path = directory / name
        path.write_text(text, newline="")
        written.append(path)
    return written


def main(argv: list[str]) -> int:
    directory = Path(argv[0]) if argv else Path("tests/data/firms")
    for path in write(directory):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
