"""A SIGKILL storm: six incidents (three chains, three quicksorts) through two workers while
pool processes and whole workers are killed every 2-3 s for two minutes; dead workers are
restarted, as a supervisor would. Afterwards every incident must be COMPLETE and cleaned up,
with no message stuck, lost or sent twice and every sort right.

    python -m bench.storm --runs 10               # what docs/RELIABILITY.md reports
    python -m bench.storm --runs 1 --seconds 20   # a short one

Uses the configured stack (CELERY_BROKER_URL, DATABASE_URL); writes var/storm-results.json.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command

from incidents import workflow  # first: importing it sets Django up for this script
from incidents.models import FINAL_STATUSES, Incident, IncidentStatus, MessageLog
from incidents.processes import WorkerGroup, _children_of, worker_env
from workflows import quicksort

# Sized so that the incidents are still running when the storm ends (on 2 cores).
CHAIN_HOPS = 4000
SORT_SIZE = 3000
rng = random.Random()  # its own: libraries may seed the shared one


def _start_incidents() -> tuple[list[str], dict[str, list[int]]]:
    chains = [workflow.CreateIncident(name=f"storm chain {n}", kind="SOAK") for n in range(3)]
    for incident_id in chains:
        workflow.send(message={"IncidentID": incident_id, "left": CHAIN_HOPS}, queue="soak_hop")
    sorts: dict[str, list[int]] = {}
    for n in range(3):
        incident_id = workflow.CreateIncident(name=f"storm sort {n}", kind=quicksort.KIND)
        sorts[incident_id] = [rng.randint(0, 100) for _ in range(SORT_SIZE)]
        quicksort.start(incident_id, sorts[incident_id])
    workflow.FlushMessages()
    return chains, sorts


def _faults(chains: list[str], sorts: dict[str, list[int]]) -> list[str]:
    """What is wrong with the incidents' end state (empty: nothing)."""
    faults = []
    ids = [*chains, *sorts]
    for incident in Incident.objects.filter(pk__in=ids):
        if incident.status != IncidentStatus.COMPLETE or incident.cleaned_at is None:
            faults.append(f"{incident.name}: {incident.status}, cleaned {incident.cleaned_at}, "
                          f"{incident.comment[:200]}")
    log = MessageLog.objects.filter(incident_id__in=ids)
    stuck = list(log.exclude(status__in=FINAL_STATUSES).values_list("destination", "status"))
    if stuck:
        faults.append(f"{len(stuck)} message(s) in flight: {stuck[:5]}")
    for incident_id in chains:
        lefts = Counter(log.filter(incident_id=incident_id, destination="soak_hop")
                        .values_list("body__left", flat=True))
        if lefts != Counter(range(CHAIN_HOPS + 1)):
            faults.append(f"chain {incident_id}: a hop lost or sent twice")
    for incident_id, numbers in sorts.items():
        merges = Counter(log.filter(incident_id=incident_id, destination="quicksort_merge")
                         .values_list("dest_tag", flat=True))
        if [tag for tag, n in merges.items() if n > 1]:
            faults.append(f"sort {incident_id}: a merge sent twice")
        if quicksort.sorted_result(incident_id) != sorted(numbers):
            faults.append(f"sort {incident_id}: wrong result")
    return faults


def storm(seconds: float, settle: float) -> dict[str, Any]:
    """One storm; its kills and what was wrong at the end."""
    env = worker_env({"WORKFLOW_MODULES": "bench.handlers,workflows.quicksort"})
    kills = Counter[str]()
    with WorkerGroup(env=env) as group:
        workers = [group.start("storm1", concurrency=2), group.start("storm2", concurrency=2)]
        restarts = 0

        def supervise() -> None:
            nonlocal restarts
            for n, worker in enumerate(workers):
                if worker.process.poll() is not None:
                    restarts += 1
                    workers[n] = group.start(f"storm{n + 1}-{restarts}", concurrency=2)

        chains, sorts = _start_incidents()
        ends = time.monotonic() + seconds
        while time.monotonic() < ends:
            time.sleep(rng.uniform(2, 3))
            supervise()
            worker = rng.choice(workers)
            children = _children_of(worker.process.pid)
            if children and rng.random() < 0.7:
                os.kill(rng.choice(children), signal.SIGKILL)
                kills["pool process"] += 1
            else:
                group.kill(worker)
                kills["whole worker"] += 1
        ids = [*chains, *sorts]
        live_at_end = Incident.objects.filter(pk__in=ids, completed_at__isnull=True).count()
        deadline = time.monotonic() + settle
        while (Incident.objects.filter(pk__in=ids, cleaned_at__isnull=True).exists()
               and time.monotonic() < deadline):
            supervise()
            time.sleep(1)
        faults = _faults(chains, sorts)
    return {"kills": dict(kills), "restarts": restarts,
            "incidents_still_running_when_the_storm_ended": live_at_end, "faults": faults}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=120, help="how long each storm lasts")
    parser.add_argument("--settle", type=float, default=300,
                        help="how long the incidents may take to end after the storm")
    parser.add_argument("--output", default=str(Path(settings.VAR_DIR) / "storm-results.json"))
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    runs = []
    for n in range(args.runs):
        started = time.monotonic()
        result = storm(args.seconds, args.settle)
        result["seconds"] = round(time.monotonic() - started, 1)
        runs.append(result)
        print(json.dumps({"run": n + 1, **result}), flush=True)
    passed = sum(not r["faults"] for r in runs)
    Path(args.output).write_text(json.dumps({"runs": runs, "passed": passed}, indent=2))
    print(f"{passed} of {len(runs)} storms ended with nothing stuck, lost or sent twice")
    raise SystemExit(0 if passed == len(runs) else 1)


if __name__ == "__main__":
    main()
