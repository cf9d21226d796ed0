"""Grouping hotspots into fire clusters, and keeping cluster names stable across passes.

Two hotspots belong to one cluster when a chain of hotspots links them with no step longer
than `link_km` (single linkage; DBSCAN with min_samples=1). Points are bucketed in a grid of
link_km cells, so only points in neighbouring cells are compared: about linear in the number
of points for real hotspot densities.

    labels = link_clusters(lons, lats, link_km=2.0)   # labels[i]: cluster of point i
"""
from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Sequence

import numpy as np

KM_PER_DEGREE_LAT = 110.574
KM_PER_DEGREE_LON_EQUATOR = 111.320


def to_km(lons: np.ndarray, lats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Equirectangular projection about the points' mean latitude (fine over a region)."""
    lat0 = float(np.mean(lats)) if len(lats) else 0.0
    x = lons * KM_PER_DEGREE_LON_EQUATOR * np.cos(np.radians(lat0))
    y = lats * KM_PER_DEGREE_LAT
    return x, y


def link_clusters(lons: Sequence[float], lats: Sequence[float], link_km: float) -> np.ndarray:
    """Label each point with its cluster, 0..k-1 numbered in order of each cluster's first
    point, so the same input always gives the same labels."""
    if link_km <= 0:
        raise ValueError(f"link_km {link_km!r} must be > 0")
    x, y = to_km(np.asarray(lons, dtype=float), np.asarray(lats, dtype=float))
    n = len(x)
    parent = np.arange(n)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]  # path halving
            i = int(parent[i])
        return i

    cells: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i, cell in enumerate(zip(np.floor(x / link_km).astype(int), np.floor(y / link_km).astype(int),
                                 strict=True)):
        cells[(int(cell[0]), int(cell[1]))].append(i)
    # Each pair of neighbouring cells once: the cell itself and 4 of its 8 neighbours.
    for (cx, cy), members in cells.items():
        for dx, dy in ((0, 0), (1, 0), (1, 1), (0, 1), (-1, 1)):
            others = cells.get((cx + dx, cy + dy))
            if not others:
                continue
            a, b = np.asarray(members), np.asarray(others)
            close = np.hypot(x[a, None] - x[None, b], y[a, None] - y[None, b]) <= link_km
            for i, j in zip(*np.nonzero(close), strict=True):
                ri, rj = root(int(a[i])), root(int(b[j]))
                if ri != rj:
                    parent[max(ri, rj)] = min(ri, rj)
    roots = [root(i) for i in range(n)]
    numbering: dict[int, int] = {}
    return np.asarray([numbering.setdefault(r, len(numbering)) for r in roots], dtype=int)


def groups(labels: np.ndarray) -> list[list[int]]:
    """The members (point indices) of each label, in label order."""
    found: list[list[int]] = [[] for _ in range(int(labels.max()) + 1 if len(labels) else 0)]
    for i, label in enumerate(labels):
        found[int(label)].append(i)
    return found


def name_clusters(previous: dict[str, list[int]], members: Iterable[Sequence[int]],
                  next_number: int) -> tuple[dict[str, list[int]], int]:
    """Name this pass's clusters after the previous pass's: a cluster takes the name of the
    previous cluster it shares most points with (ties: the lower number), unless an earlier
    cluster took it; otherwise it gets a new name "C<next_number>". Point indices must be
    stable across passes (an append-only list). Returns ({name: members}, next number).

        name_clusters({"C1": [0, 1]}, [[0, 1, 5], [2, 3]], next_number=2)
        -> ({"C1": [0, 1, 5], "C2": [2, 3]}, 3)
    """
    owner = {point: name for name, points in previous.items() for point in points}
    named: dict[str, list[int]] = {}
    for group in sorted((sorted(m) for m in members), key=lambda m: m[0]):
        shared: dict[str, int] = defaultdict(int)
        for point in group:
            if point in owner:
                shared[owner[point]] += 1
        candidates = sorted((name for name in shared if name not in named),
                            key=lambda name: (-shared[name], number_of(name)))
        if candidates:
            name = candidates[0]
        else:
            name, next_number = f"C{next_number}", next_number + 1
        named[name] = group
    return dict(sorted(named.items(), key=lambda item: number_of(item[0]))), next_number


def number_of(name: str) -> int:
    return int(name[1:])


def signature(keys: Iterable[str]) -> str:
    """A short fingerprint of a cluster's hotspots: equal iff the hotspot sets are equal."""
    digest = hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()
    return digest[:16]
