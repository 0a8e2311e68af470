"""Everything one process can run next to each other on background threads: the
interpreter (a worker), the HTTP request connector, `--functions`, and a node's
housekeeping (the scheduler that starts schedules' runs, the pruner that applies retention) — so a single `flowmetal run`,
`worker` or `serve` can do all the work."""

from __future__ import annotations

import threading
from typing import Any

from flowmetal.connectors.egress import EgressPolicy
from flowmetal.connectors.functions import FunctionWorker, load_functions_file
from flowmetal.connectors.http import HttpConnector
from flowmetal.connectors.secrets import SecretSource
from flowmetal.runtime.driver import Runtime
from flowmetal.runtime.retention import Pruner
from flowmetal.runtime.schedules import Scheduler
from flowmetal.runtime.worker import Worker
from flowmetal.store.base import CallRow


class Services:
    def __init__(self, runtime: Runtime, *, functions_file: str | None = None, interpreter: bool = True,
                 http: bool = True, concurrency: int = 16, worker: Worker | None = None,
                 housekeeping: bool = False, retain: float | None = None, secrets_file: str | None = None,
                 egress: EgressPolicy | None = None) -> None:
        self.runtime = runtime
        secrets = SecretSource(secrets_file)  # what secret("NAME") stands for here (checked now)
        self.pruner = Pruner(runtime.store, retain) if housekeeping else None
        self.scheduler = Scheduler(runtime.store) if housekeeping else None
        self.functions: FunctionWorker | None = None
        if functions_file is not None:
            # (as many calls at once as the interpreter runs programs: after a crash every call its
            # predecessor held is run again here at once, not 8 at a time)
            self.functions = FunctionWorker(runtime.store, secrets=secrets, concurrency=max(8, concurrency))
            self.functions.add(load_functions_file(functions_file))
        # the interpreter performs calls to these functions itself (one commit per call); the
        # function worker serves the rest (retries, calls requested by other processes)
        self.http = (HttpConnector(runtime.store, secrets=secrets, egress=egress, concurrency=max(16, concurrency))
                     if http else None)
        self.worker = worker if worker is not None else (
            Worker(runtime, concurrency=concurrency, functions=self.functions, http=self.http)
            if interpreter else None)
        self._threads: list[threading.Thread] = []

    def serves_any(self, calls: list[CallRow]) -> bool:
        """Whether one of these calls is still open and performed in this process."""
        for call in calls:
            if call.status not in ("pending", "claimed"):
                continue
            if call.kind == "http" and self.http is not None:
                return True
            if call.kind == "function" and self.functions is not None and call.name in self.functions.functions:
                return True
        return False

    def start(self) -> None:
        targets: list[tuple[str, Any]] = []
        if self.worker is not None:
            targets.append(("flowmetal-worker", self.worker.run))
        if self.http is not None:
            targets.append(("flowmetal-http", self.http.run))
        if self.pruner is not None:
            targets.append(("flowmetal-pruner", self.pruner.run))
        if self.scheduler is not None:
            targets.append(("flowmetal-scheduler", self.scheduler.run))
        for name, target in targets:
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        if self.functions is not None:
            self.functions.start()

    def stop(self, timeout: float = 30.0) -> None:
        if self.worker is not None:
            self.worker.stop()
        if self.http is not None:
            self.http.stop()
        if self.pruner is not None:
            self.pruner.stop()
        if self.scheduler is not None:
            self.scheduler.stop()
        if self.functions is not None:
            self.functions.stop(timeout)
        for thread in self._threads:
            thread.join(timeout)
