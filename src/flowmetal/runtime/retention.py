"""Retention: a node deletes finished programs once their retention runs out.

Each program may carry its own retention (from its deployment or schedule); `--retain` on
the node is the default for the rest (none: they are kept). Pruning goes in bounded batches,
one transaction each with a pause between them, so workers committing beside it wait at most
one batch; finished programs are never claimed, so deleting them races with nobody.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from flowmetal.observe.logs import event, logger
from flowmetal.store.base import Store
from flowmetal.store.operations import PruneReport, PruneRule

MAX_INTERVAL = 60.0  # seconds between prunes
MIN_INTERVAL = 1.0
BATCH_PAUSE = 0.05  # seconds between two batches
log = logger("retention")


class Pruner:
    def __init__(self, store: Store, retain: float | None = None, *, clock: Callable[[], float] = time.time,
                 interval: float | None = None, batch: int = 200) -> None:
        self.store = store
        self.retain = retain
        self.clock = clock
        # a short retention is pruned often enough to hold roughly
        self.interval = interval if interval is not None else (
            MAX_INTERVAL if retain is None else max(MIN_INTERVAL, min(MAX_INTERVAL, retain / 4)))
        self.batch = batch
        self.stop_requested = threading.Event()
        self.pruned = PruneReport()

    def prune_once(self) -> PruneReport:
        rule = PruneRule(self.clock(), default_retain=self.retain, batch=self.batch)
        report = self.store.prune_all(rule, pause=self._pause)
        self.pruned.add(report)
        if report.programs:
            event(log, logging.INFO, "pruned finished programs", **report.counts)
        return report

    def _pause(self) -> None:
        self.stop_requested.wait(BATCH_PAUSE)

    def run(self) -> None:
        while not self.stop_requested.wait(self.interval):
            try:
                self.prune_once()
            except Exception as e:  # the store is unreachable for now: try again next time
                event(log, logging.WARNING, "cannot prune", error=str(e))

    def stop(self) -> None:
        self.stop_requested.set()
