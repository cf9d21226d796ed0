"""Durations and timestamps as the operator's console prints them: "28 µs", "3.1 s",
"2 min 5 s"; "2026-12-02 11:47:37" in the project's time zone."""
from __future__ import annotations

from datetime import datetime

from django.utils import timezone


def human_duration(seconds: float | None) -> str:
    """Seconds for a human, to two or three significant figures; "-" for none.

        human_duration(0.000028487)  # -> "28 µs"
        human_duration(125)          # -> "2 min 5 s"
    """
    if seconds is None:
        return "-"
    s = max(float(seconds), 0.0)  # clocks of two hosts may disagree by a hair
    # Each bound is where the smaller unit would round up to the next one ("1000 ms").
    if s < 0.0009995:
        return f"{s * 1e6:.0f} µs"
    if s < 0.9995:
        return f"{s * 1e3:.1f} ms" if s < 0.00995 else f"{s * 1e3:.0f} ms"
    if s < 59.95:
        return f"{s:.1f} s" if s < 9.95 else f"{s:.0f} s"
    whole = round(s)
    if whole < 3600:
        minutes, rest = divmod(whole, 60)
        return f"{minutes} min {rest} s" if rest else f"{minutes} min"
    if whole < 86400:
        hours, rest = divmod(whole, 3600)
        return f"{hours} h {rest // 60} min" if rest // 60 else f"{hours} h"
    days, rest = divmod(whole, 86400)
    return f"{days} d {rest // 3600} h" if rest // 3600 else f"{days} d"


def timestamp(value: datetime | None) -> str:
    """To the second, in the current time zone (settings.TIME_ZONE); "-" for none."""
    if value is None:
        return "-"
    if timezone.is_aware(value):
        value = timezone.localtime(value)
    return value.strftime("%Y-%m-%d %H:%M:%S")
