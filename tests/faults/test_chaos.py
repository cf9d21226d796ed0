"""Workers SIGKILLed again and again at random moments, including inside the commit and
between commit and publish: nothing is lost and no effect is applied twice."""
from __future__ import annotations

import random

import pytest

from incidents.processes import WorkerGroup, worker_env

from ..conftest import TEST_MODULES, wait_until
from . import workload

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

# Each worker kills itself now and then at the worst moments (see engine/failpoints.py).
FAILPOINTS = "before_commit:0.01,in_commit:0.01,before_publish:0.01,before_mark_sent:0.01"


def test_repeated_sigkills_lose_nothing_and_apply_nothing_twice(transactional_db, broker):
    # A run killed between commit and publish leaves its sends to the relay: relay quickly.
    env = worker_env({"WORKFLOW_MODULES": TEST_MODULES, "WF_FAILPOINTS": FAILPOINTS,
                      "WORKFLOW_RELAY_STALE_SECONDS": "2", "WORKFLOW_RELAY_INTERVAL_SECONDS": "1"})
    with WorkerGroup(env=env) as group:
        workers = [group.start("chaos1"), group.start("chaos2")]
        revived = 0

        def supervise() -> None:
            """What systemd or compose's restart policy does: start a worker that died (the
            relay runs in a worker's main process, so a failpoint there kills it whole)."""
            nonlocal revived
            for n, worker in enumerate(workers):
                if worker.process.poll() is not None:
                    revived += 1
                    workers[n] = group.start(f"chaos{n + 1}-revived{revived}")

        work = workload.start(size=2000, hops=300)
        for kill in range(4):
            # Let some work happen, then kill a whole worker (main process and pool).
            target = workload.progress(work) + random.randint(20, 80)
            wait_until(lambda t=target: supervise() or workload.progress(work) >= t,
                       what="progress before the next kill")
            victim = random.randrange(len(workers))
            group.kill(workers[victim])
            workers[victim] = group.start(f"chaos{victim + 1}-{kill}")
        workload.assert_survived(work, while_waiting=supervise)
        deaths = sum(w.log_text().count("exited with 'signal 9 (SIGKILL)'") for w in group.workers)
    print(f"chaos: {deaths} pool processes killed at failpoints, 4 whole workers killed, "
          f"{revived} restarted after a failpoint killed their main process")
    assert deaths > 0, "the failpoints never fired: the test did not exercise anything"
