"""The HTTP API's deployment and schedule routes, in process (httpx on the ASGI app, a real
SQLite store): deploy, list versions, create/list/pause/resume/trigger/backfill/delete a
schedule, and the errors each gives."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import httpx

from flowmetal.api import create_app
from flowmetal.runtime.driver import Runtime
from flowmetal.store import open_store

MAIN = 'from flowmetal import start\n\ndef main(n=0):\n    return start("lib/kid.flow").result() + n\n'
KID = "def main():\n    return 1\n"


def test_deployments_and_schedules_over_http(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'api.db'}")
    app = create_app(store, Runtime(store))

    async def go() -> None:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http:
            async def ok(method: str, url: str, status: int = 200, **kw: Any) -> Any:
                r = await http.request(method, url, **kw)
                assert r.status_code == status, r.text
                return r.json()

            async def error(method: str, url: str, status: int, kind: str, **kw: Any) -> str:
                r = await http.request(method, url, **kw)
                assert (r.status_code, r.json()["error"]["type"]) == (status, kind), r.text
                return str(r.json()["error"]["message"])

            files = {"main.flow": MAIN, "lib/kid.flow": KID}
            dep = await ok("POST", "/deployments", 201, json={"name": "job", "files": files, "retain": "7d"})
            assert (dep["version"], dep["main"], dep["retain"], dep["created"]) == (1, "main.flow", 604800.0, True)
            assert (await ok("POST", "/deployments", json={"name": "job", "files": files}))["created"] is False
            assert "not among them" in await error("POST", "/deployments", 422, "ValidationError",
                                                   json={"name": "x", "files": {"main.flow": MAIN}})
            bad = await http.post("/deployments", json={"name": "x", "files": {"m.flow": "import os\n"}})
            assert bad.status_code == 422 and bad.json()["error"]["diagnostics"][0]["file"] == "m.flow"
            assert [d["name"] for d in (await ok("GET", "/deployments"))["deployments"]] == ["job"]
            assert [v["version"] for v in (await ok("GET", "/deployments/job"))["versions"]] == [1]
            await error("GET", "/deployments/nope", 404, "UnknownDeployment")

            s = await ok("POST", "/schedules", 201, json={
                "name": "nightly", "program": "job", "cron": "0 2 * * *", "tz": "Europe/Paris", "args": {"n": 1},
                "overlap": "buffer", "catchup": "10m", "jitter": 0})
            assert s["next_run"].startswith("nightly@") and s["next_run"].endswith(("+01:00", "+02:00"))
            assert (s["overlap"], s["catchup"], s["paused"]) == ("buffer", 600.0, False)
            await error("POST", "/schedules", 409, "ScheduleExists",
                        json={"name": "nightly", "program": "job", "every": 60})
            await error("POST", "/schedules", 404, "UnknownDeployment",
                        json={"name": "other", "program": "nope", "every": 60})
            assert "not a cron expression" in await error("POST", "/schedules", 422, "UsageError",
                                                          json={"name": "x", "program": "job", "cron": "0 2"})
            await error("POST", "/schedules", 422, "ValidationError",
                        json={"name": "x", "program": "job", "every": 60, "overlap": "queue"})
            assert (await ok("POST", "/schedules/nightly/pause"))["paused"] is True
            assert (await ok("GET", "/schedules/nightly"))["next_run"] is None
            resumed = await ok("POST", "/schedules/nightly/resume")
            assert resumed["paused"] is False and resumed["next_run"] == s["next_run"]
            trig = await ok("POST", "/schedules/nightly/trigger", 201)
            assert trig["id"].startswith("nightly@") and trig["id"].endswith(".manual")
            back = await ok("POST", "/schedules/nightly/backfill", json={"from": "2026-03-28", "to": "2026-03-30"})
            assert back["started"] == ["nightly@2026-03-28T02:00:00+01:00", "nightly@2026-03-29T03:00:00+02:00"]
            run = await ok("GET", f"/programs/{back['started'][1]}")
            assert (run["deployment"], run["args"], run["status"]) == ("job@1", {"n": 1}, "running")
            listed = (await ok("GET", "/schedules"))["schedules"]
            assert [(x["name"], x["runs"]) for x in listed] == [("nightly", 3)]
            await ok("DELETE", "/schedules/nightly")
            await error("DELETE", "/schedules/nightly", 404, "UnknownSchedule")
            await error("POST", "/schedules/nightly/trigger", 404, "UnknownSchedule")

    try:
        anyio.run(go)
    finally:
        store.close()
