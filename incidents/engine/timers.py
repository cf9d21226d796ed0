"""Durable timers: send(delay=...) messages, held in the outbox until they are due.

A timer is a QUEUED log row with `not_before` set, committed with its handler like any send.
Its `submitted` is its due time until it fires, so neither the publish after the commit
(outbox.publish skips rows not yet due) nor the relay (it takes rows `submitted` long ago)
sends it early, and pending timers add nothing to a hop. Each worker's timer loop
(engine/relay.py) takes the due ones (ledger.take_due_timers: one statement that moves
their `submitted` to now, so no other worker takes them) and publishes them as any outbox
row; if that publish fails, the relay publishes them later like any unpublished row.
"""
from __future__ import annotations

import datetime as dt
import logging
import math
from typing import Any

from django.utils import timezone

from incidents.engine import ledger, outbox
from incidents.exceptions import MessageError, MessageTypeError

logger = logging.getLogger(__name__)

#: Due timers taken per statement; a pass takes batches until none is left.
BATCH = 200


def due_time(delay: Any, not_before: Any, *, where: str) -> dt.datetime | None:
    """When a message sent with `delay` (seconds) or `not_before` (an aware datetime) is due;
    None for a plain message (neither given, or a delay of 0)."""
    if delay is not None and not_before is not None:
        raise MessageError(f"{where}: give delay={delay!r} or not_before={not_before!r}, not "
                           "both")
    if not_before is not None:
        if not isinstance(not_before, dt.datetime):
            raise MessageTypeError(f"{where}: not_before={not_before!r:.80} must be a datetime "
                                   "with a time zone, e.g. timezone.now() + timedelta(minutes=5)")
        if timezone.is_naive(not_before):
            raise MessageError(f"{where}: not_before={not_before!r} has no time zone; give an "
                               "aware datetime (datetime.now(UTC) + ...) or use delay=seconds")
        return not_before
    if delay is None:
        return None
    if isinstance(delay, bool) or not isinstance(delay, (int, float)):
        raise MessageTypeError(f"{where}: delay={delay!r:.80} must be a number of seconds >= 0")
    if not math.isfinite(delay) or delay < 0:
        raise MessageError(f"{where}: delay={delay!r} must be a finite number of seconds >= 0")
    try:
        return timezone.now() + dt.timedelta(seconds=delay) if delay > 0 else None
    except OverflowError:
        raise MessageError(f"{where}: delay={delay!r} seconds is beyond the dates that can be "
                           "stored; give a shorter delay") from None


def fire_due() -> int:
    """Publish the timers that are due (this worker's share of them); return how many."""
    fired = 0
    while True:
        rows = ledger.take_due_timers(timezone.now(), limit=BATCH)
        if not rows:
            return fired
        outbox.publish(rows)
        fired += len(rows)
        logger.debug("timers: published %d due message(s)", len(rows))
        if len(rows) < BATCH:
            return fired
