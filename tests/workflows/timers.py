"""Handlers that send timers (send(delay=...)), for tests/test_timers.py."""
from __future__ import annotations

from incidents import workflow


@workflow.handler
def timer_start_handler(message):
    """Send `count` timers to timer_target due in `delay` seconds; then fail, or complete
    the incident, if asked."""
    for n in range(int(message.get("count", 1))):
        workflow.send({"IncidentID": message["IncidentID"], "n": n}, "timer_target",
                      delay=message["delay"])
    if message.get("fail"):
        raise RuntimeError("failing after a delayed send")
    if message.get("complete"):
        workflow.Complete(message["IncidentID"])


@workflow.handler
def timer_target_handler(message):
    """A timer fired: nothing else to do (its log row records when it was handled)."""


def RegisterHandlers():
    workflow.RegisterHandler(handler=timer_start_handler, queue="timer_start")
    workflow.RegisterHandler(handler=timer_target_handler, queue="timer_target")
