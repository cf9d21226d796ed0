"""The incident map: simulated burnt areas and hotspots over the incident's bounding box.

The map is equirectangular: its height is its width times the bbox's aspect ratio in km
(longitudes shrink by cos(mid latitude)), so a square km looks square.

    image = draw_map(bbox, width=512, hotspots=[(lon, lat), ...], areas=[result, ...],
                     labels=[("C1", lon, lat)], title="Ridge fire, pass 1")
"""
from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from .spread import burnt_mask

BACKGROUND = (226, 232, 210)  # unburnt land
GRATICULE = (196, 204, 180)
BURNT = (120, 40, 30)
HOTSPOT = (255, 150, 0)
HOTSPOT_EDGE = (200, 0, 0)
TEXT = (20, 20, 20)
LABEL_BOX = (255, 255, 240)


def map_size(bbox: Sequence[float], width: int) -> tuple[int, int]:
    """(width, height) in pixels of the map of `bbox` (min_lon, min_lat, max_lon, max_lat)."""
    min_lon, min_lat, max_lon, max_lat = bbox
    aspect = (max_lat - min_lat) / ((max_lon - min_lon) * math.cos(math.radians((min_lat + max_lat) / 2)))
    return width, max(1, round(width * aspect))


def draw_map(bbox: Sequence[float], width: int, hotspots: Iterable[tuple[float, float]],
             areas: Iterable[dict[str, Any]], labels: Iterable[tuple[str, float, float]] = (),
             title: str = "", font: Any = None) -> Image.Image:
    """An RGB image: burnt cells of each spread result (spread.SpreadResult.to_json()), the
    hotspots on top, a label per cluster and a title line (in `font`, else Pillow's default;
    figure.draw_figure() frames it with axes and a legend)."""
    min_lon, min_lat, max_lon, max_lat = bbox
    width, height = map_size(bbox, width)
    lon_per_px, lat_per_px = (max_lon - min_lon) / width, (max_lat - min_lat) / height
    pixels = np.empty((height, width, 3), dtype=np.uint8)
    pixels[:] = BACKGROUND
    # Pixel centres in degrees.
    lons = min_lon + (np.arange(width) + 0.5) * lon_per_px
    lats = max_lat - (np.arange(height) + 0.5) * lat_per_px
    for area in areas:
        mask = burnt_mask(area)
        cols = np.floor((lons - area["west"]) / area["cell_lon"]).astype(int)
        rows = np.floor((area["north"] - lats) / area["cell_lat"]).astype(int)
        inside_c, inside_r = (cols >= 0) & (cols < mask.shape[1]), (rows >= 0) & (rows < mask.shape[0])
        burnt = np.zeros((height, width), dtype=bool)
        burnt[np.ix_(inside_r, inside_c)] = mask[np.ix_(rows[inside_r], cols[inside_c])]
        pixels[burnt] = BURNT
    image = Image.fromarray(pixels)  # (h, w, 3) uint8: RGB
    draw = ImageDraw.Draw(image)
    _graticule(draw, bbox, width, height)

    def xy(lon: float, lat: float) -> tuple[float, float]:
        return (lon - min_lon) / lon_per_px, (max_lat - lat) / lat_per_px

    radius = max(2, width // 200)
    for lon, lat in hotspots:
        x, y = xy(lon, lat)
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=HOTSPOT, outline=HOTSPOT_EDGE)
    for name, lon, lat in labels:
        x, y = xy(lon, lat)
        _text(draw, (x + 3 * radius, y - 4 * radius), name, font)
    if title:
        _text(draw, (4, 4), title, font)
    return image


def _text(draw: ImageDraw.ImageDraw, at: tuple[float, float], text: str, font: Any = None) -> None:
    """Text on a pale box, readable over burnt areas."""
    left, top, right, bottom = draw.textbbox(at, text, font=font)
    draw.rectangle((left - 2, top - 2, right + 2, bottom + 2), fill=LABEL_BOX)
    draw.text(at, text, fill=TEXT, font=font)


def graticule_step(span: float) -> float:
    """Degrees between graticule lines for a box `span` degrees across (the axes' ticks of
    figure.py fall on these lines)."""
    return 0.1 if span <= 2 else 1.0


def _graticule(draw: ImageDraw.ImageDraw, bbox: Sequence[float], width: int, height: int) -> None:
    """Thin lines every 0.1 degree (every degree for large boxes)."""
    min_lon, min_lat, max_lon, max_lat = bbox
    step = graticule_step(max(max_lon - min_lon, max_lat - min_lat))
    for lon in np.arange(math.ceil(min_lon / step) * step, max_lon, step):
        x = (lon - min_lon) / (max_lon - min_lon) * width
        draw.line((x, 0, x, height), fill=GRATICULE)
    for lat in np.arange(math.ceil(min_lat / step) * step, max_lat, step):
        y = (max_lat - lat) / (max_lat - min_lat) * height
        draw.line((0, y, width, y), fill=GRATICULE)


def write_atomically(path: Path, write: Callable[[Path], object]) -> Path:
    """Write `path` by `write(partial)` and a rename (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    write(partial)
    os.replace(partial, path)
    return path


def save_png(image: Image.Image, path: Path) -> Path:
    return write_atomically(path, lambda partial: image.save(partial, format="PNG"))
