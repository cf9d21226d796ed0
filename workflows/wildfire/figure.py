"""The map as a figure: a title above, latitude and longitude axes with ticks on the
graticule, a frame, and a legend below (Pillow only; its bundled font).

    image = draw_figure(bbox, width=800, hotspots=[(lon, lat), ...], areas=[result, ...],
                        labels=[("C1", lon, lat)], title="Ridge fire, pass 1")

The map itself (maps.draw_map) keeps its size, `width` x maps.map_size(...)[1]; the figure
adds the margins around it (figure_size() says how large it is).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from .maps import BURNT, HOTSPOT, HOTSPOT_EDGE, LABEL_BOX, TEXT, draw_map, graticule_step, map_size

PAPER = (255, 255, 255)
LEGEND = (("burnt", "simulated burnt area"), ("hotspot", "FIRMS hotspot"),
          ("label", "fire cluster"))
Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


@dataclass
class Layout:
    font: Font
    size: tuple[int, int]  # the whole figure
    origin: tuple[int, int]  # the map's top-left corner in the figure
    title: list[str]
    lon_ticks: list[float]
    lat_ticks: list[float]
    decimals: int
    legend_top: int
    legend_rows: int


def font_for(width: int) -> Font:
    return ImageFont.load_default(size=min(28, max(11, round(width / 55))))


def _extent(font: Font, text: str) -> tuple[int, int]:
    left, top, right, bottom = font.getbbox(text)
    return math.ceil(right - left), math.ceil(bottom - top)


def lon_label(lon: float, decimals: int) -> str:
    return f"{abs(lon):.{decimals}f}°{'E' if lon > 0 else 'W' if lon < 0 else ''}"


def lat_label(lat: float, decimals: int) -> str:
    return f"{abs(lat):.{decimals}f}°{'N' if lat > 0 else 'S' if lat < 0 else ''}"


def _ticks(low: float, high: float, step: float) -> list[float]:
    first, last = math.ceil(low / step - 1e-9), math.floor(high / step + 1e-9)
    return [round(k * step, 6) for k in range(first, last + 1)]


def _tick_step(low: float, high: float, pixels: int, room: float) -> float:
    """The smallest graticule multiple whose ticks are at least `room` pixels apart."""
    base = graticule_step(high - low)
    for multiple in (1, 2, 5, 10, 20, 50, 100):
        step = base * multiple
        if step / (high - low) * pixels >= room:
            return step
    return base * 100


def _wrap(font: Font, text: str, width: int) -> list[str]:
    lines: list[str] = []
    for word in text.split():
        if lines and _extent(font, f"{lines[-1]} {word}")[0] <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines


def layout(bbox: Sequence[float], width: int, title: str = "") -> Layout:
    """Where everything goes: the figure's size follows the map, its labels and the title."""
    min_lon, min_lat, max_lon, max_lat = bbox
    map_w, map_h = map_size(bbox, width)
    font = font_for(width)
    line = _extent(font, "Ag°")[1]
    pad, tick = max(4, line // 2), max(3, line // 3)
    decimals = 1 if graticule_step(max(max_lon - min_lon, max_lat - min_lat)) < 1 else 0
    widest_lon = _extent(font, lon_label(-179.9, decimals))[0]
    lon_step = _tick_step(min_lon, max_lon, map_w, widest_lon * 1.5)
    lat_step = _tick_step(min_lat, max_lat, map_h, line * 2.5)
    decimals = 0 if min(lon_step, lat_step) >= 1 else 1
    lat_ticks = _ticks(min_lat, max_lat, lat_step)
    widest_lat = max((_extent(font, lat_label(v, decimals))[0] for v in lat_ticks), default=0)
    left = pad + line + pad + widest_lat + tick + 2  # caption, labels, ticks
    right = pad + widest_lon // 2 + 1  # the last longitude label is centred on the edge
    legend_w = sum(line + pad + _extent(font, text)[0] + 2 * pad for _, text in LEGEND)
    figure_w = left + map_w + right
    title_lines = _wrap(font, title, figure_w - 2 * pad) if title else []
    top = pad + len(title_lines) * (line + pad // 2) + pad + line // 2  # room for the top label
    below = tick + pad // 2 + line + pad + line + pad  # ticks, labels, caption
    legend_rows = 1 if legend_w <= figure_w - 2 * pad else len(LEGEND)  # a row, or a column
    height = top + map_h + below + legend_rows * (line + pad) + pad
    return Layout(font, (figure_w, height), (left, top), title_lines,
                  _ticks(min_lon, max_lon, lon_step), lat_ticks, decimals, top + map_h + below,
                  legend_rows)


def figure_size(bbox: Sequence[float], width: int, title: str = "") -> tuple[int, int]:
    """(width, height) in pixels of draw_figure(bbox, width, ..., title=title)."""
    return layout(bbox, width, title).size


def draw_figure(bbox: Sequence[float], width: int, hotspots: Iterable[tuple[float, float]],
                areas: Iterable[dict[str, Any]], labels: Iterable[tuple[str, float, float]] = (),
                title: str = "") -> Image.Image:
    """The map (maps.draw_map) with a title, axes and a legend around it."""
    plan = layout(bbox, width, title)
    drawn = draw_map(bbox, width, hotspots, areas, labels, font=plan.font)
    image = Image.new("RGB", plan.size, PAPER)
    image.paste(drawn, plan.origin)
    draw = ImageDraw.Draw(image)
    font, (x0, y0), (map_w, map_h) = plan.font, plan.origin, drawn.size
    line = _extent(font, "Ag°")[1]
    pad, tick = max(4, line // 2), max(3, line // 3)
    for n, text in enumerate(plan.title):
        draw.text((pad, pad + n * (line + pad // 2)), text, fill=TEXT, font=font)
    draw.rectangle((x0 - 1, y0 - 1, x0 + map_w, y0 + map_h), outline=TEXT)
    min_lon, min_lat, max_lon, max_lat = bbox
    for lon in plan.lon_ticks:
        x = x0 + (lon - min_lon) / (max_lon - min_lon) * map_w
        draw.line((x, y0 + map_h, x, y0 + map_h + tick), fill=TEXT)
        draw.text((x, y0 + map_h + tick + pad // 2), lon_label(lon, plan.decimals), fill=TEXT,
                  font=font, anchor="mt")
    for lat in plan.lat_ticks:
        y = y0 + (max_lat - lat) / (max_lat - min_lat) * map_h
        draw.line((x0 - 1 - tick, y, x0 - 1, y), fill=TEXT)
        draw.text((x0 - tick - 3, y), lat_label(lat, plan.decimals), fill=TEXT, font=font,
                  anchor="rm")
    caption_y = y0 + map_h + tick + pad // 2 + line + pad // 2
    draw.text((x0 + map_w / 2, caption_y), "Longitude", fill=TEXT, font=font, anchor="mt")
    _vertical_text(image, "Latitude", font, (pad, y0 + map_h // 2))
    _legend(draw, plan, pad, line)
    return image


def _vertical_text(image: Image.Image, text: str, font: Font, at: tuple[int, int]) -> None:
    """`text` rotated to read upwards, its left edge at at[0], centred on at[1]."""
    w, h = _extent(font, text)
    strip = Image.new("RGB", (w + 2, h + 4), PAPER)
    ImageDraw.Draw(strip).text((1, 1), text, fill=TEXT, font=font, anchor="lt")
    turned = strip.rotate(90, expand=True)
    image.paste(turned, (at[0], max(0, at[1] - turned.size[1] // 2)))


def _legend(draw: ImageDraw.ImageDraw, plan: Layout, pad: int, line: int) -> None:
    x, y = pad, plan.legend_top
    for key, text in LEGEND:
        box = (x, y, x + line, y + line)
        if key == "burnt":
            draw.rectangle(box, fill=BURNT)
        elif key == "hotspot":
            inset = line // 4
            draw.ellipse((x + inset, y + inset, x + line - inset, y + line - inset),
                         fill=HOTSPOT, outline=HOTSPOT_EDGE)
        else:
            draw.rectangle(box, fill=LABEL_BOX, outline=TEXT)
            draw.text((x + line / 2, y + line / 2), "C", fill=TEXT, font=plan.font, anchor="mm")
        draw.text((x + line + pad, y + line / 2), text, fill=TEXT, font=plan.font, anchor="lm")
        if plan.legend_rows == 1:
            x += line + pad + _extent(plan.font, text)[0] + 2 * pad
        else:
            y += line + pad
