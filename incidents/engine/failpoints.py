"""Fault injection for the reliability tests.

WF_FAILPOINTS="in_commit:0.05,before_publish:0.05" makes a process SIGKILL itself at those
points with those probabilities, so the tests can kill a worker exactly where it hurts
(inside the commit, between commit and publish). Unset, as everywhere outside the fault
tests, a point costs one dictionary look-up.
"""
from __future__ import annotations

import os
import random
import signal

POINTS = ("before_commit", "in_commit", "before_publish", "before_mark_sent")


def _parse(spec: str) -> dict[str, float]:
    chances = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, chance = item.partition(":")
        if name not in POINTS:
            raise ValueError(f"WF_FAILPOINTS: unknown point {name!r}; known: {', '.join(POINTS)}")
        chances[name] = float(chance or 1)
    return chances


_chances = _parse(os.environ.get("WF_FAILPOINTS", ""))


def hit(point: str) -> None:
    chance = _chances.get(point)
    if chance and random.random() < chance:
        os.kill(os.getpid(), signal.SIGKILL)
