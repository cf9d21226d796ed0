"""The workload the fault tests run and the end state they demand of it."""
from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from incidents import workflow
from incidents.models import FINAL_STATUSES, Incident, IncidentStatus, MessageLog, MessageStatus
from workflows import quicksort

from ..conftest import ended, wait_until


@dataclass
class Workload:
    sort_id: str
    numbers: list[int]
    chain_id: str
    hops: int


def start(size: int = 2000, hops: int = 300) -> Workload:
    """A quicksort of `size` numbers (fan-out, atomic fan-in) and a chain of `hops` messages."""
    numbers = [random.randint(0, size // 3) for _ in range(size)]
    sort_id = workflow.CreateIncident(name="fault sort", kind=quicksort.KIND)
    quicksort.start(sort_id, numbers)
    chain_id = workflow.CreateIncident(name="fault chain", kind="TEST")
    workflow.send(message={"IncidentID": chain_id, "left": hops}, queue="probe_chain")
    workflow.FlushMessages()
    return Workload(sort_id, numbers, chain_id, hops)


def progress(workload: Workload) -> int:
    """How many of the workload's messages have been handled so far."""
    return MessageLog.objects.filter(incident_id__in=[workload.sort_id, workload.chain_id],
                                     status=MessageStatus.COMPLETE).count()


def assert_survived(workload: Workload, timeout: float = 300,
                    while_waiting: Callable[[], None] = lambda: None) -> None:
    """Both incidents complete, every message ended, the sort is right, nothing ran twice.
    `while_waiting` is called as the incidents are polled (e.g. to restart dead workers)."""
    for incident_id in (workload.sort_id, workload.chain_id):
        incident = wait_until(lambda i=incident_id: while_waiting() or ended(i), timeout=timeout,
                              what=f"incident {incident_id} to end")
        assert incident.status == IncidentStatus.COMPLETE, incident.comment
    log = MessageLog.objects.filter(incident_id__in=[workload.sort_id, workload.chain_id])
    stuck = log.exclude(status__in=FINAL_STATUSES).values_list("destination", "status")
    assert list(stuck) == [], "messages left in flight"
    assert not log.filter(status=MessageStatus.ERROR).exists()
    assert quicksort.sorted_result(workload.sort_id) == sorted(workload.numbers)
    # Effects once: every hop of the chain and every merge step was sent exactly once.
    lefts = Counter(body["left"] for body in log.filter(destination="probe_chain")
                    .values_list("body", flat=True))
    assert lefts == Counter(range(workload.hops + 1)), "a chain hop was sent twice or lost"
    merges = Counter(log.filter(destination="quicksort_merge").values_list("dest_tag", flat=True))
    assert [tag for tag, n in merges.items() if n > 1] == [], "a merge was sent twice"
    assert Incident.objects.filter(pk=workload.sort_id, status=IncidentStatus.COMPLETE).exists()
