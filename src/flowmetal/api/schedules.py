"""Routes for deployments and schedules: list and deploy programs by name; create, list,
pause, resume, trigger, backfill and delete schedules (what `flowmetal deploy` and
`flowmetal schedule` do, for remote clients and the console)."""

from __future__ import annotations

from typing import Any

from msgspec import UNSET
from starlette.requests import Request

from flowmetal.api import ops_types as o
from flowmetal.api.context import api
from flowmetal.api.http import ApiError
from flowmetal.api.operations import Operations, Reply, typed
from flowmetal.durations import parse_duration
from flowmetal.runtime import schedules
from flowmetal.runtime.deployments import resolve, started_paths

ops = Operations()


def _seconds(value: float | str, name: str) -> float:
    if isinstance(value, str):
        return parse_duration(value, name)
    if value < 0 or value != value or value == float("inf"):
        raise ApiError(422, "ValidationError", f"{name}: a number of seconds, at least 0")
    return float(value)


# -- deployments ------------------------------------------------------------------------------------

@ops.add("GET", "/deployments", summary="Deployments (each one's latest version)",
         responses={200: (o.DeploymentList, "deployments, by name")})
async def list_deployments(request: Request) -> o.DeploymentList:
    a = api(request)
    rows = await a.run(a.store.list_deployments)
    return o.DeploymentList([typed(r.to_json(), o.Deployment) for r in rows])


@ops.add("GET", "/deployments/{name}", summary="Every version of a deployment",
         responses={200: (o.DeploymentVersions, "versions, oldest first")}, errors=(404,))
async def deployment_versions(request: Request) -> o.DeploymentVersions:
    a = api(request)
    rows = await a.run(a.store.list_deployments, request.path_params["name"])
    return o.DeploymentVersions([typed(r.to_json(), o.Deployment) for r in rows])


@ops.add("POST", "/deployments", summary="Deploy programs under a name", body=o.Deploy,
         responses={201: (o.Deployment, "a new version"), 200: (o.Deployment, "unchanged: the latest version")},
         errors=(422,))
async def deploy(request: Request, body: o.Deploy) -> Reply:
    from flowmetal.lang.program import compile_cached, source_hash

    a = api(request)
    main = body.main if body.main is not UNSET else next(iter(body.files))
    if main not in body.files:
        raise ApiError(422, "ValidationError", f"main: {main!r} is not among the files")
    retain = None if body.retain is UNSET or body.retain is None else _seconds(body.retain, "retain")
    for path, text in body.files.items():
        for started in started_paths(text):
            if resolve(path, started) not in body.files:
                raise ApiError(422, "ValidationError", f"files: {path} starts {started!r}, which is not among them")

    def store() -> tuple[Any, bool]:
        for path, text in body.files.items():
            compile_cached(text, path)  # raises CheckFailed (422, with the diagnostics)
        bundle = {path: (source_hash(text), text) for path, text in body.files.items()}
        return a.store.deploy(body.name, main, bundle, a.now(), retain=retain, set_retain=body.retain is not UNSET)

    dep, created = await a.run(store)
    return Reply(201 if created else 200, typed({**dep.to_json(), "created": created}, o.Deployment))


# -- schedules --------------------------------------------------------------------------------------

def _schedule(s: Any, now: float) -> o.Schedule:
    return typed(schedules.schedule_json(s, now), o.Schedule)


@ops.add("GET", "/schedules", summary="Schedules and their next runs",
         responses={200: (o.ScheduleList, "schedules, by name")})
async def list_schedules(request: Request) -> o.ScheduleList:
    a = api(request)
    rows = await a.run(a.store.list_schedules)
    return o.ScheduleList([_schedule(s, a.now()) for s in rows])


@ops.add("POST", "/schedules", summary="Create a schedule", body=o.NewSchedule,
         responses={201: (o.Schedule, "created")}, errors=(404, 409, 422))
async def create_schedule(request: Request, body: o.NewSchedule) -> Reply:
    a = api(request)
    now = a.now()
    row = schedules.new_schedule(
        body.name, body.program, body.args, cron=body.cron if body.cron is not UNSET else None,
        every=_seconds(body.every, "every") if body.every is not UNSET else None, tz=body.tz, overlap=body.overlap,
        catchup=_seconds(body.catchup, "catchup"), jitter=_seconds(body.jitter, "jitter"),
        retain=_seconds(body.retain, "retain") if body.retain is not None else None, paused=body.paused, now=now)

    def store() -> Any:
        a.store.create_schedule(row, now)
        a.store.notify()
        return a.store.get_schedule(row.name)

    return Reply(201, _schedule(await a.run(store), now))


@ops.add("GET", "/schedules/{name}", summary="A schedule", responses={200: (o.Schedule, "the schedule")},
         errors=(404,))
async def get_schedule(request: Request) -> o.Schedule:
    a = api(request)
    return _schedule(await a.run(a.store.get_schedule, request.path_params["name"]), a.now())


@ops.add("DELETE", "/schedules/{name}", summary="Delete a schedule (its runs are left alone)",
         responses={200: (o.Deleted, "deleted")}, errors=(404,))
async def delete_schedule(request: Request) -> o.Deleted:
    a = api(request)
    name = request.path_params["name"]
    await a.run(a.store.delete_schedule, name)
    return o.Deleted(name, "deleted")


@ops.add("POST", "/schedules/{name}/pause", summary="Pause a schedule (its running runs go on)",
         responses={200: (o.Schedule, "the schedule")}, errors=(404,))
async def pause_schedule(request: Request) -> o.Schedule:
    a = api(request)
    return _schedule(await a.run(schedules.pause, a.store, request.path_params["name"], a.now()), a.now())


@ops.add("POST", "/schedules/{name}/resume",
         summary="Resume a schedule from its next tick (ticks that fell while it was paused are not started)",
         responses={200: (o.Schedule, "the schedule")}, errors=(404,))
async def resume_schedule(request: Request) -> o.Schedule:
    a = api(request)

    def resume() -> Any:
        s = schedules.resume(a.store, request.path_params["name"], a.now())
        a.store.notify()
        return s

    return _schedule(await a.run(resume), a.now())


@ops.add("POST", "/schedules/{name}/trigger", summary="Start a run now, whatever the overlap policy",
         responses={201: (o.Triggered, "`id`: the run's program id (NAME@TIME.manual, one per second)")},
         errors=(404,))
async def trigger_schedule(request: Request) -> Reply:
    a = api(request)
    program_id = await a.run(schedules.trigger, a.store, request.path_params["name"], a.now())
    return Reply(201, o.Triggered(program_id))


@ops.add("POST", "/schedules/{name}/backfill", body=o.Backfill,
         summary="Start now a run for every tick between two times (both included) that has none",
         responses={200: (o.Backfilled, "`started`: the ids of the runs started")}, errors=(404, 422))
async def backfill_schedule(request: Request, body: o.Backfill) -> o.Backfilled:
    a = api(request)
    name = request.path_params["name"]

    def run() -> list[str]:
        tz = a.store.get_schedule(name).tz
        return schedules.backfill(a.store, name, schedules.parse_when(body.from_, tz, "from"),
                                  schedules.parse_when(body.to, tz, "to"), a.now())

    return o.Backfilled(await a.run(run))
