"""The HTTP API's types for deployments, schedules and webhooks (msgspec Structs, like
api/types.py: they validate the requests and make /openapi.json)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from msgspec import UNSET, Meta, UnsetType

from flowmetal.api.types import DEPLOYMENT_PATTERN, _Request, _Response

DeploymentName = Annotated[str, Meta(pattern=DEPLOYMENT_PATTERN, description="a deployment's name")]
Duration = Annotated[float | str, Meta(description="seconds, or a duration such as \"90s\", \"12h\" or \"30d\"")]
Overlap = Literal["skip", "buffer", "allow", "cancel"]


class Deploy(_Request):
    """Store programs under a name: the main program and every program it `start()`s by path."""

    name: DeploymentName
    files: Annotated[dict[Annotated[str, Meta(min_length=1, max_length=1024)], Annotated[str, Meta(max_length=1 << 20)]],
                     Meta(min_length=1, max_length=1000, description="path -> source")]
    main: Annotated[str, Meta(min_length=1, max_length=1024, description="default: the first of `files`")] \
        | UnsetType = UNSET
    retain: Annotated[Duration | None, Meta(description="keep its finished programs this long (null: the node's "
                                                        "default)")] | UnsetType = UNSET


class Deployment(_Response):
    name: str
    version: int
    latest: int
    main: str
    source_hash: str
    files: Annotated[dict[str, str], Meta(description="path -> source hash")]
    created_at: float
    retain: float | None
    created: bool | UnsetType = UNSET


class DeploymentList(_Response):
    deployments: list[Deployment]


class DeploymentVersions(_Response):
    versions: list[Deployment]


class NewSchedule(_Request):
    """Run a deployment on `cron` (read in `tz`) or `every` N seconds."""

    name: DeploymentName
    program: DeploymentName
    args: dict[str, Any] = {}
    cron: Annotated[str, Meta(min_length=1, max_length=200, description="minute hour day month weekday")] \
        | UnsetType = UNSET
    every: Duration | UnsetType = UNSET
    tz: Annotated[str, Meta(min_length=1, max_length=64)] = "UTC"
    overlap: Overlap = "skip"
    catchup: Duration = 3600.0
    jitter: Duration = 0.0
    retain: Duration | None = None
    paused: bool = False


class Schedule(_Response):
    name: str
    program: str
    args: dict[str, Any]
    cron: str | None
    every: float | None
    tz: str
    overlap: Overlap
    catchup: float
    jitter: float
    retain: float | None
    paused: bool
    next_tick: float | None
    due_at: float | None
    buffered: float | None
    last_run: str | None
    runs: int
    skipped: Annotated[int, Meta(description="ticks not started because of the overlap policy")]
    missed: Annotated[int, Meta(description="ticks older than the catch-up window when a scheduler ran")]
    last_error: str | None
    created_at: float
    updated_at: float
    next_run: Annotated[str | None, Meta(description="the id the next run will have")]
    next_run_in: Annotated[float | None, Meta(description="seconds until it starts")]


class ScheduleList(_Response):
    schedules: list[Schedule]


class Backfill(_Request, rename={"from_": "from"}):
    """ISO-8601 times; without an offset they are read in the schedule's zone."""

    from_: Annotated[str, Meta(min_length=1, max_length=64)]
    to: Annotated[str, Meta(min_length=1, max_length=64)]


class Triggered(_Response):
    id: str


class Backfilled(_Response):
    started: list[str]


class Deleted(_Response):
    name: str
    status: Literal["deleted"]


class HookAnswer(_Response):
    id: str
    status: Literal["started", "duplicate", "queued"]
