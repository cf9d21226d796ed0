"""An incident's area for the console: its corners as text and a small drawn box on a
latitude/longitude grid (inline SVG; no map tiles, so nothing is fetched from outside)."""
from __future__ import annotations

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from incidents.engine.validation import parse_corner

WIDTH, HEIGHT = 360, 180  # one pixel per degree
MIN_BOX = 4  # pixels: a town-sized area stays visible on a world grid


def _x(longitude: float) -> float:
    return max(0.0, min(WIDTH, longitude + 180))


def _y(latitude: float) -> float:
    return max(0.0, min(HEIGHT, 90 - latitude))


def area_map(upper_left: str, lower_right: str) -> SafeString | str:
    """The corners as given and, when both parse, the box drawn with latitude first (the
    order the original's parameter names give)."""
    if not upper_left and not lower_right:
        return "-"
    text = format_html("{} to {} (latitude/longitude)", upper_left, lower_right)
    first, second = parse_corner(upper_left), parse_corner(lower_right)
    if first is None or second is None:
        return text
    (lat1, lon1), (lat2, lon2) = first, second
    left, right = sorted((_x(lon1), _x(lon2)))
    top, bottom = sorted((_y(lat1), _y(lat2)))
    width, height = max(right - left, MIN_BOX), max(bottom - top, MIN_BOX)
    grid = format_html_join(
        "", '<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="{}" stroke-width="0.5"/>',
        [(x, 0, x, HEIGHT, "#888" if x == 180 else "#ccc") for x in range(0, WIDTH + 1, 30)]
        + [(0, y, WIDTH, y, "#888" if y == 90 else "#ccc") for y in range(0, HEIGHT + 1, 30)])
    # Dashed lines through the box lead the eye to it on the world grid.
    centre_x, centre_y = f"{left + width / 2:.1f}", f"{top + height / 2:.1f}"
    return format_html(
        '{}<br><svg class="wf-area" role="img" aria-label="area on a latitude/longitude grid" '
        'width="{}" height="{}" viewBox="0 0 {} {}" style="background:#eef4fa;border:1px solid #999">'
        '{}<line x1="{}" y1="0" x2="{}" y2="{}" stroke="#c62828" stroke-dasharray="2 3" '
        'stroke-width="0.5"/><line x1="0" y1="{}" x2="{}" y2="{}" stroke="#c62828" '
        'stroke-dasharray="2 3" stroke-width="0.5"/><rect x="{}" y="{}" width="{}" height="{}" '
        'fill="#c62828" fill-opacity="0.35" stroke="#c62828"/></svg>',
        text, WIDTH, HEIGHT, WIDTH, HEIGHT, grid, centre_x, centre_x, HEIGHT,
        centre_y, WIDTH, centre_y, *(f"{value:.1f}" for value in (left, top, width, height)))
