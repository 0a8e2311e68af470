"""What a store keeps for running Flowmetal for months, next to the programs themselves:
named deployments (versioned bundles of program sources), schedules, webhook
configurations, and the deletion of finished programs (retention).

`OperationsStore` is the part of the `Store` interface about them; each backend implements
it in a module of its own (sqlite_ops.py, postgres_ops.py) and the contract tests in
tests/test_store_operations.py run against both. The store stays ignorant of the language
and of calendars: what a schedule's next tick is, and which ticks to start, is decided by
flowmetal.runtime.schedules and handed to the store as a `TickPlan`, which the store applies
atomically with the programs it starts.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flowmetal.errors import FlowmetalError

# the tables a program's data lives in, the order prune deletes them (programs last)
PROGRAM_TABLES = ("events", "checkpoints", "inbox", "calls", "call_attempts", "callbacks", "programs")
OVERLAP_POLICIES = ("skip", "buffer", "allow", "cancel")


class OperationsError(FlowmetalError):
    exit_code = 2


class UnknownDeployment(OperationsError):
    pass


class UnknownSchedule(OperationsError):
    pass


class ScheduleExists(OperationsError):
    pass


class UnknownHook(OperationsError):
    pass


@dataclass
class DeploymentRow:
    """One version of a deployment: its main program and every program it may `start()`,
    by path relative to the main program's directory (`files`: path -> source hash)."""

    name: str
    version: int
    main: str
    source_hash: str
    files: dict[str, str]
    created_at: float
    latest: int  # the deployment's newest version
    retain: float | None = None  # seconds its finished programs are kept (None: the node's default)

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "latest": self.latest, "main": self.main,
                "source_hash": self.source_hash, "files": self.files, "created_at": self.created_at,
                "retain": self.retain}


@dataclass
class ScheduleRow:
    name: str
    program: str  # a deployment name
    args: dict[str, Any]
    tz: str
    cron: str | None = None
    every: float | None = None  # seconds (a whole number), ticks aligned to the Unix epoch
    overlap: str = "skip"
    catchup: float = 3600.0  # seconds: missed ticks older than this are not started late
    jitter: float = 0.0  # seconds: each tick starts up to this much later (the same delay everywhere)
    retain: float | None = None
    paused: bool = False
    next_tick: float | None = None  # the next tick's nominal time (its runs' id), epoch seconds
    due_at: float | None = None  # when it starts: next_tick plus its jitter
    buffered: float | None = None  # a tick held back by overlap "buffer" until the last run ends
    last_run: str | None = None  # the id of the latest run started
    runs: int = 0
    skipped: int = 0  # ticks not started because of the overlap policy
    missed: int = 0  # ticks missed (downtime, pause) beyond the catch-up window
    last_error: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "program": self.program, "args": self.args, "cron": self.cron,
                "every": self.every, "tz": self.tz, "overlap": self.overlap, "catchup": self.catchup,
                "jitter": self.jitter, "retain": self.retain, "paused": self.paused, "next_tick": self.next_tick,
                "due_at": self.due_at, "buffered": self.buffered, "last_run": self.last_run, "runs": self.runs,
                "skipped": self.skipped, "missed": self.missed, "last_error": self.last_error,
                "created_at": self.created_at, "updated_at": self.updated_at}


@dataclass
class TickPlan:
    """What to do for one due schedule, decided (outside the store) from its row, whether its
    last run is still live and the time. The store applies it in one transaction with the
    programs it starts."""

    runs: list[tuple[str, float]] = field(default_factory=list)  # (program id, tick) to start
    cancel_last: bool = False  # request the cancellation of the live last run first
    next_tick: float | None = None
    due_at: float | None = None
    buffered: float | None = None
    skipped: int = 0
    missed: int = 0
    error: str | None = None  # recorded as the schedule's last_error


# plan(schedule, last run live?, now) -> TickPlan
Planner = Callable[[ScheduleRow, bool, float], TickPlan]


@dataclass
class HookRow:
    name: str
    config: dict[str, Any]  # see flowmetal.api.hooks: what to start or message, how to check signatures
    created_at: float
    updated_at: float


@dataclass
class PruneReport:
    """Rows deleted, per table."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PROGRAM_TABLES, 0))

    @property
    def programs(self) -> int:
        return self.counts["programs"]

    def add(self, other: PruneReport) -> None:
        for table, n in other.counts.items():
            self.counts[table] = self.counts.get(table, 0) + n


@dataclass
class PruneRule:
    """Which finished programs to delete: those finished before `now - older_than` (when given),
    else those whose own retention (or `default_retain`) ran out."""

    now: float
    older_than: float | None = None
    default_retain: float | None = None
    statuses: tuple[str, ...] = ("completed", "failed", "cancelled", "moved")
    batch: int = 200


class OperationsStore(ABC):
    # -- deployments ------------------------------------------------------------------------
    @abstractmethod
    def deploy(self, name: str, main: str, files: dict[str, tuple[str, str]], now: float,
               retain: float | None = None, set_retain: bool = False) -> tuple[DeploymentRow, bool]:
        """Store a version of `name` (`files`: path -> (source hash, source); `main` is
        one of the paths). Unchanged sources keep the latest version: (row, False); otherwise a
        new version: (row, True). `set_retain` replaces the deployment's retention by `retain`."""

    @abstractmethod
    def get_deployment(self, name: str, version: int | None = None) -> DeploymentRow:
        """A version (default: the latest); UnknownDeployment if there is none."""

    @abstractmethod
    def list_deployments(self, name: str | None = None) -> list[DeploymentRow]:
        """The latest version of every deployment, by name; with `name`, each of its versions."""

    # -- schedules ----------------------------------------------------------------------------
    @abstractmethod
    def create_schedule(self, schedule: ScheduleRow, now: float) -> None:
        """ScheduleExists if the name is taken; UnknownDeployment if its program is not deployed."""

    @abstractmethod
    def get_schedule(self, name: str) -> ScheduleRow: ...

    @abstractmethod
    def list_schedules(self) -> list[ScheduleRow]: ...

    @abstractmethod
    def update_schedule(self, name: str, changes: dict[str, Any], now: float) -> ScheduleRow:
        """Set some of paused, next_tick, due_at, buffered (and the settings); the new row."""

    @abstractmethod
    def delete_schedule(self, name: str) -> None: ...

    @abstractmethod
    def next_schedule_due(self) -> float | None:
        """When the earliest unpaused schedule's next tick is due. (A buffered tick waits for its
        schedule's last run to end, which the schedulers' regular polls notice.)"""

    @abstractmethod
    def fire_schedules(self, plan: Planner, now: float, limit: int = 16) -> list[str]:
        """Lock up to `limit` due schedules that no other process is firing, apply `plan` to each
        with the programs it starts, in one transaction; the ids of the programs started."""

    @abstractmethod
    def start_scheduled(self, name: str, runs: list[tuple[str, float]], now: float,
                        as_last: bool = True) -> list[str]:
        """Start runs of a schedule now (trigger, backfill), whatever its overlap policy; ids that
        exist already are left alone. The ids of the programs created."""

    # -- webhooks -----------------------------------------------------------------------------
    @abstractmethod
    def put_hook(self, name: str, config: dict[str, Any], now: float) -> None: ...

    @abstractmethod
    def get_hook(self, name: str) -> HookRow: ...

    @abstractmethod
    def list_hooks(self) -> list[HookRow]: ...

    @abstractmethod
    def delete_hook(self, name: str) -> None: ...

    # -- retention -------------------------------------------------------------------------------
    @abstractmethod
    def prune(self, rule: PruneRule) -> PruneReport:
        """Delete one batch (at most `rule.batch`) of finished programs with everything of theirs
        (events, checkpoints, inbox, calls, callbacks), in one transaction that workers can run
        beside. A finished program whose children still run is kept until they end."""

    def prune_all(self, rule: PruneRule, pause: Callable[[], None] | None = None) -> PruneReport:
        """Prune batch after batch until none is left (`pause` between batches, to let others in)."""
        total = PruneReport()
        while True:
            report = self.prune(rule)
            total.add(report)
            if report.programs < rule.batch:
                return total
            if pause is not None:
                pause()
