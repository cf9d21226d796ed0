"""Long runs marked PROCESSING from a background thread, off the hot path.

A first delivery to a plain handler is not claimed before its handler runs: the commit's
fenced finish claims and ends the message in one write (engine/ledger.py). So that operators
still see what runs, and the attempt of a run that kills its worker is still counted, a
thread in each process claims a run once it has lasted WORKFLOW_CLAIM_AFTER_SECONDS (it
looks four times as often). The run's commit and this thread agree through a lock of the
run's own: whichever comes first wins, and the commit's fence follows the outcome
(HandlerRun.claimed).
"""
from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field

from incidents import conf
from incidents.engine import ledger
from incidents.engine.context import HandlerRun, consumer

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class Watch:
    run: HandlerRun
    started: float = field(default_factory=time.monotonic)
    settled: bool = False
    guard: threading.Lock = field(default_factory=threading.Lock)


class Watcher:
    """Polls the runs of its process a few times a second: a run costs its watcher no
    thread switch (waking a thread for every run cost more than the claim it saves)."""

    def __init__(self) -> None:
        self._watches: set[Watch] = set()
        self._guard = threading.Lock()
        self._pid: int | None = None

    def watch(self, run: HandlerRun) -> Watch:
        """Start watching an unclaimed run."""
        watch = Watch(run)
        with self._guard:
            self._watches.add(watch)
            if self._pid != os.getpid():  # first use, or first use after a fork
                self._pid = os.getpid()
                threading.Thread(target=self._loop, name="workflow-claims", daemon=True).start()
        return watch

    def settle(self, watch: Watch) -> None:
        """Stop watching, before the run commits (and before it opens its transaction: a
        claim in progress holds the watch's guard and needs the database)."""
        with watch.guard:
            watch.settled = True
        with self._guard:
            self._watches.discard(watch)

    def _loop(self) -> None:
        from django.db import connection

        while True:
            after = float(conf.get("CLAIM_AFTER_SECONDS"))
            time.sleep(max(after / 4, 0.01))
            now = time.monotonic()
            with self._guard:
                due = [w for w in self._watches if now - w.started >= after]
                self._watches.difference_update(due)
            if not due:
                continue
            try:
                for watch in due:
                    self._claim(watch)
            except Exception:  # a database outage: the commit's fence still holds
                logger.warning("could not mark long runs PROCESSING", exc_info=True)
            finally:
                connection.close()

    @staticmethod
    def _claim(watch: Watch) -> None:
        with watch.guard:
            run = watch.run
            if watch.settled or run.message_id is None:
                return
            run.claimed = ledger.claim(run.message_id, run.attempt, received=run.received,
                                       consumer=consumer())


watcher = Watcher()
