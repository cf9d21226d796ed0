"""A small stochastic cellular automaton of fire spread around one hotspot cluster.

The model is that of Alexandridis et al. (2008), "A cellular automata model for forest fire
spread prediction: the case of the wildfire that swept through Spetses Island in 1990",
without slope: a burning cell ignites each unburnt neighbour with probability

    p = p_h * (1 + p_veg) * (1 + p_den) * p_w,
    p_w = exp(c1 * V) * exp(c2 * V * (cos(theta) - 1))

where p_h = 0.58, V is the wind speed (m/s), theta the angle between the wind and the
direction of spread, c1 = 0.045, c2 = 0.131 (the paper's values). We have no fuel map, so the
fuel is synthetic: p_veg (-0.3 sparse .. +0.4 dense) comes from a smooth random field drawn
from the seed, with unburnable patches (rock, water; about 6% of the cells), and the density
term is a constant p_den = -0.3 (sparse to normal), which keeps the fire from spreading far
against the wind. Diagonal neighbours, sqrt(2) cells away, get
p / sqrt(2). A cell burns for one step, then is burnt. The same inputs and seed give the
same result.

    result = simulate(hotspots, cell_m=250, steps=24, wind_speed=5, wind_from=270, seed=7)
    result.burnt.sum(), result.to_json()
"""
from __future__ import annotations

import base64
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .clusters import KM_PER_DEGREE_LAT, KM_PER_DEGREE_LON_EQUATOR

UNBURNT, BURNING, BURNT, NO_FUEL = 0, 1, 2, 3
P_H, P_DEN, C1, C2 = 0.58, -0.3, 0.045, 0.131
MAX_CELLS = 160  # per side: the grid's cells grow beyond this, so a run stays in seconds
# (row, col) steps to the 8 neighbours; rows grow southwards.
NEIGHBOURS = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]


@dataclass(frozen=True)
class Point:
    """A hotspot as the model sees it: where, and its pixel footprint in km."""

    lon: float
    lat: float
    scan: float = 0.375
    track: float = 0.375


@dataclass
class SpreadResult:
    """The grid (north-west corner, cell size in degrees) and its cells at the end."""

    west: float
    north: float
    cell_lon: float
    cell_lat: float
    cell_m: float
    ignited: np.ndarray  # bool, the cells the hotspots cover
    burnt: np.ndarray  # bool, burning or burnt at the end (includes ignited)
    steps_run: int

    @property
    def burnt_km2(self) -> float:
        return float(self.burnt.sum()) * (self.cell_m / 1000) ** 2

    def to_json(self) -> dict[str, Any]:
        rows, cols = self.burnt.shape
        return {"west": self.west, "north": self.north, "cell_lon": self.cell_lon,
                "cell_lat": self.cell_lat, "cell_m": self.cell_m, "shape": [rows, cols],
                "burnt": _pack(self.burnt), "ignited_cells": int(self.ignited.sum()),
                "burnt_cells": int(self.burnt.sum()), "burnt_km2": round(self.burnt_km2, 3),
                "steps_run": self.steps_run}


def burnt_mask(result: dict[str, Any]) -> np.ndarray:
    """The burnt cells of a result as to_json() wrote it."""
    rows, cols = (int(n) for n in result["shape"])
    bits = np.frombuffer(base64.b64decode(result["burnt"]), dtype=np.uint8)
    return np.unpackbits(bits, count=rows * cols).reshape(rows, cols).astype(bool)


def _pack(mask: np.ndarray) -> str:
    return base64.b64encode(np.packbits(mask.ravel()).tobytes()).decode("ascii")


def simulate(points: Sequence[Point], *, cell_m: float, steps: int, wind_speed: float,
             wind_from: float, seed: int) -> SpreadResult:
    """Spread fire from the cells under `points` for `steps` steps. The grid covers the
    points plus the farthest the fire can go in `steps` (steps cells each way); cells grow
    past `cell_m` if that would exceed MAX_CELLS per side. `wind_from` is where the wind
    blows from, in degrees clockwise from north (270: a westerly, spreading fire east)."""
    if not points:
        raise ValueError("simulate(): no points to ignite")
    lat0 = sum(p.lat for p in points) / len(points)
    km_lon = KM_PER_DEGREE_LON_EQUATOR * math.cos(math.radians(lat0))
    margin_km = (steps + 2) * cell_m / 1000
    west = min(p.lon for p in points) - margin_km / km_lon
    east = max(p.lon for p in points) + margin_km / km_lon
    south = min(p.lat for p in points) - margin_km / KM_PER_DEGREE_LAT
    north = max(p.lat for p in points) + margin_km / KM_PER_DEGREE_LAT
    extent_km = max((east - west) * km_lon, (north - south) * KM_PER_DEGREE_LAT)
    cell_m = max(cell_m, extent_km * 1000 / MAX_CELLS)
    cell_lon, cell_lat = cell_m / 1000 / km_lon, cell_m / 1000 / KM_PER_DEGREE_LAT
    shape = (math.ceil((north - south) / cell_lat), math.ceil((east - west) / cell_lon))

    rng = np.random.default_rng(seed)
    p_veg = fuel_field(shape, rng)
    state = np.where(np.isnan(p_veg), NO_FUEL, UNBURNT).astype(np.int8)
    ignited = np.zeros(shape, dtype=bool)
    for point in points:  # every cell the pixel footprint (scan x track km) covers
        half_cols = max(0, round(point.scan * 500 / cell_m - 0.5))
        half_rows = max(0, round(point.track * 500 / cell_m - 0.5))
        row, col = int((north - point.lat) / cell_lat), int((point.lon - west) / cell_lon)
        ignited[max(0, row - half_rows):row + half_rows + 1,
                max(0, col - half_cols):col + half_cols + 1] = True
    state[ignited] = BURNING
    p_veg = np.nan_to_num(p_veg, nan=0.0)
    chances = [(dr, dc, spread_probability(dr, dc, p_veg, wind_speed, wind_from))
               for dr, dc in NEIGHBOURS]

    steps_run = 0
    while steps_run < steps and (state == BURNING).any():
        burning = state == BURNING
        catches = np.zeros(shape, dtype=bool)
        for dr, dc, p in chances:
            # from_neighbour[r, c]: the cell at (r - dr, c - dc) burns, so fire moves (dr, dc)
            from_neighbour = _shift(burning, dr, dc)
            catches |= from_neighbour & (rng.random(shape) < p)
        state[burning] = BURNT
        state[catches & (state == UNBURNT)] = BURNING
        steps_run += 1
    return SpreadResult(west=west, north=north, cell_lon=cell_lon, cell_lat=cell_lat,
                        cell_m=cell_m, ignited=ignited,
                        burnt=(state == BURNING) | (state == BURNT), steps_run=steps_run)


def spread_probability(dr: int, dc: int, p_veg: np.ndarray, wind_speed: float,
                       wind_from: float) -> np.ndarray:
    """Probability that fire moves one cell by (dr, dc) (rows southwards) into each cell."""
    blows_to = math.radians((wind_from + 180) % 360)
    wind = (math.sin(blows_to), math.cos(blows_to))  # (east, north) unit vector
    step = (dc, -dr)
    cos_theta = (wind[0] * step[0] + wind[1] * step[1]) / math.hypot(*step)
    p_w = math.exp(C1 * wind_speed) * math.exp(C2 * wind_speed * (cos_theta - 1))
    p = P_H * (1 + p_veg) * (1 + P_DEN) * p_w
    if dr and dc:
        p = p / math.sqrt(2)
    return np.clip(p, 0.0, 1.0)


def fuel_field(shape: tuple[int, int], rng: np.random.Generator, patch: int = 8) -> np.ndarray:
    """p_veg in [-0.3, 0.4]: noise on a coarse grid (one value per `patch` cells), smoothed by
    bilinear interpolation; NaN where there is no fuel (the lowest part of the field,
    about 6% of the cells)."""
    coarse = rng.random((shape[0] // patch + 2, shape[1] // patch + 2))
    rows = np.arange(shape[0]) / patch
    cols = np.arange(shape[1]) / patch
    r0, c0 = rows.astype(int), cols.astype(int)
    fr, fc = (rows - r0)[:, None], (cols - c0)[None, :]
    field = (coarse[np.ix_(r0, c0)] * (1 - fr) * (1 - fc) + coarse[np.ix_(r0 + 1, c0)] * fr * (1 - fc)
             + coarse[np.ix_(r0, c0 + 1)] * (1 - fr) * fc + coarse[np.ix_(r0 + 1, c0 + 1)] * fr * fc)
    return np.where(field < 0.2, np.nan, -0.3 + 0.7 * field)


def _shift(mask: np.ndarray, dr: int, dc: int) -> np.ndarray:
    """mask moved by (dr, dc) cells, with False coming in at the edges (no wrap-around)."""
    out = np.zeros_like(mask)
    rows, cols = mask.shape
    out[max(dr, 0):rows + min(dr, 0), max(dc, 0):cols + min(dc, 0)] = \
        mask[max(-dr, 0):rows + min(-dr, 0), max(-dc, 0):cols + min(-dc, 0)]
    return out
