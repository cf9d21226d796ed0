"""The engine's _Cleanup handler: once an ended incident is quiet, remove what it left."""
from __future__ import annotations

import logging
from typing import Any

from django.db import transaction

from incidents.engine import (
    context,
    draining,
    ledger,
    locks,
    releases,
    result_files,
    resume,
    scratch,
)
from incidents.engine.context import HandlerRun
from incidents.engine.registry import HandlerSpec
from incidents.models import IN_FLIGHT_STATUSES, HandlerState, MessageLog, MessageStatus

logger = logging.getLogger(__name__)


def in_flight(incident_id: str, *, besides: str | None = None) -> int:
    """How many of the incident's messages are committed but not yet finished."""
    rows = MessageLog.objects.filter(incident_id=incident_id, status__in=IN_FLIGHT_STATUSES)
    if besides:
        rows = rows.exclude(pk=besides)
    return rows.count()


def must_wait(message: dict[str, Any]) -> bool:
    """Cleanup waits (by retrying later) while the incident still has messages in flight."""
    return not message.get("force") and in_flight(
        message["IncidentID"], besides=message.get("MessageID")) > 0


def stop_waiting(message: dict[str, Any], waited: float) -> bool:
    """After waiting `waited` seconds: give up on the messages no worker has taken, so the
    cleanup can go on. False while a handler of the incident is still running."""
    incident_id = message["IncidentID"]
    with transaction.atomic():
        if MessageLog.objects.filter(incident_id=incident_id,
                                     status=MessageStatus.PROCESSING).exists():
            return False
        abandoned = ledger.abandon_waiting(
            incident_id, besides=message["MessageID"],
            comment=f"no worker took it within {waited:.0f} s of the incident's end")
    logger.warning("incident %s: cleanup stopped waiting after %.0f s; logged NOT PROCESSED "
                   "what no worker took, per queue: %s (is a worker consuming those queues?)",
                   incident_id, waited, abandoned)
    return True


def _cleanup(message: dict[str, Any]) -> None:
    # Applied in the commit that marks this message COMPLETE: an observer never sees the
    # incident cleaned up while its cleanup message is still in flight.
    run = context.current_run.get()
    assert run is not None, "the cleanup runs only as the _Cleanup queue's handler"
    run.in_commit.append(lambda: _remove_leftovers(message, run))


def _remove_leftovers(message: dict[str, Any], run: HandlerRun) -> None:
    incident_id = message["IncidentID"]
    # A failed incident keeps its persisted state and scratch directory for a Resume
    # (engine/resume.py); its locks go, as its runs have ended.
    kept = resume.keeps_for_resume(incident_id, message)
    removed: dict[str, int] = {}
    if message.get("CleanLocks", True):
        removed["locks"] = locks.backend().clear(incident_id)
    if message.get("CleanPersist", True) and not kept:
        removed["states"], _ = HandlerState.objects.filter(incident_id=incident_id).delete()
    if message.get("CleanMessages", False):
        removed["messages"], _ = (MessageLog.objects.filter(incident_id=incident_id)
                                  .exclude(pk=message["MessageID"]).delete())
    if not kept:
        removed["scratch_dirs"] = int(scratch.remove(incident_id))
    removed["expired_results"] = result_files.expire_batch()  # any incident's: no cron needed
    removed["expired_resume_states"] = resume.expire_batch()  # likewise
    draining.note_drained(message)  # before mark_cleaned: it notes uncleaned ones
    # Not cleaned while a release of its external resources is outstanding: the last one
    # to succeed marks it (engine/releases.py).
    done, staged = releases.cleanup_may_finish(incident_id, run.originator)
    run.outbox += staged
    if done:
        ledger.mark_cleaned(incident_id)
    logger.info("incident %s cleaned up%s: %s", incident_id,
                ", its state and scratch directory kept for a resume" if kept else "", removed)


#: The handler of the engine's own queue, registry.CLEANUP_QUEUE.
cleanup_spec = HandlerSpec(func=_cleanup, name="_Cleanup", internal=True)
