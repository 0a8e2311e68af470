"""Operating a node: the log lines of `worker` (human and JSON), `flowmetal logs`,
`/metrics` scraped and parsed with prometheus-client's parser as programs run, and
OpenTelemetry spans exported by a real `flowmetal worker` configured by OTEL_*
variables, with the trace id handed to a foreign function and to an HTTP server.
Real processes, real loopback HTTP, SQLite stores in temporary directories."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from cli_checks import kill_all, wait_for
from flowmetal.store import open_store

FAILING = '''from flowmetal import call, Retry

def main():
    print("charging")
    return call("charge", 5, retry=Retry(attempts=2, initial=0.05))
'''
FUNCTIONS = '''import json, os
import flowmetal

@flowmetal.function("charge")
def charge(ctx, amount):
    raise ValueError("card declined")

@flowmetal.function("double")
def double(ctx, n):
    with open(os.environ["FLOWMETAL_TEST_CTX"], "a") as f:
        f.write(json.dumps({"trace_id": ctx.trace_id, "traceparent": ctx.traceparent}) + "\\n")
    return n * 2
'''


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWMETAL_", "OTEL_"))}
    env["FLOWMETAL_TEST_CTX"] = str(tmp / "ctx.jsonl")
    env.update(extra)
    return env


def _flowmetal(tmp: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flowmetal", *args], cwd=tmp, env=env or _env(tmp),
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def node(tmp_path: Path) -> Path:
    (tmp_path / "failing.flow").write_text(FAILING)
    (tmp_path / "fns.py").write_text(FUNCTIONS)
    return tmp_path


def _run_worker_until(tmp: Path, store: str, done: Any, *args: str, env: dict[str, str] | None = None) -> str:
    """Run `flowmetal worker` until `done()`, stop it with SIGTERM; its stderr."""
    p = subprocess.Popen([sys.executable, "-m", "flowmetal", "worker", "--store", store, *args], cwd=tmp,
                         env=env or _env(tmp), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(done, 30)
    finally:
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=30)
        kill_all([p])
    assert p.returncode == 0, err
    return err + "\n--stdout--\n" + out


@pytest.mark.parametrize("fmt", ["human", "json"])
def test_worker_logs_a_failing_call_and_the_programs_end(node: Path, fmt: str) -> None:
    store = f"sqlite:///{node / 's.db'}"
    pid = _flowmetal(node, "start", "failing.flow", "--id", "pay-1", "--store", store).stdout.strip()
    assert pid == "pay-1"
    db = open_store(store)
    log = _run_worker_until(node, store, lambda: db.get_program(pid).status == "failed",
                            "--functions", "fns.py", "--log-format", fmt)
    log = log.split("\n--stdout--\n")[0]
    assert "Traceback" not in log
    if fmt == "json":
        records = [json.loads(line) for line in log.splitlines() if line.strip()]
        attempts = [r for r in records if r["message"] == "call attempt failed"]
        assert [r["attempt"] for r in attempts] == [1, 2]
        for r in attempts:
            assert r["level"] == "warning" and r["logger"] == "flowmetal.calls"
            assert r["program"] == "pay-1" and r["name"] == "charge" and r["key"] == "pay-1:3"
            assert r["error"] == "ValueError: card declined"
            assert 'fns.py", line 6, in charge' in r["traceback"]  # the function's own traceback
            assert "Traceback (most recent call last)" not in r["traceback"]
        ended = [r for r in records if r["message"] == "program failed"]
        assert len(ended) == 1 and ended[0]["at"] == "failing.flow:5" and ended[0]["program"] == "pay-1"
        assert "CallError: ValueError: card declined" in ended[0]["error"]
        assert any(r["message"] == "program started" and r["file"] == "failing.flow" for r in records)
    else:
        lines = log.splitlines()
        attempts = [line for line in lines if "WARNING calls: call attempt failed" in line]
        assert len(attempts) == 2, log
        assert "program=pay-1 key=pay-1:3 name=charge attempt=1 error=\"ValueError: card declined\"" in attempts[0]
        assert "attempt=2" in attempts[1]
        below = lines[lines.index(attempts[0]) + 1:lines.index(attempts[0]) + 4]
        assert below[0].strip() == 'File "' + str(node / "fns.py") + '", line 6, in charge', log
        assert below[-1].strip() == "ValueError: card declined"
        ended = [line for line in lines if "WARNING programs: program failed" in line]
        assert len(ended) == 1 and "at=failing.flow:5" in ended[0], log
    db.close()


def test_log_level_hides_what_is_below_it(node: Path) -> None:
    store = f"sqlite:///{node / 's.db'}"
    _flowmetal(node, "start", "failing.flow", "--id", "pay-2", "--store", store)
    db = open_store(store)
    log = _run_worker_until(node, store, lambda: db.get_program("pay-2").status == "failed",
                            "--functions", "fns.py", "--log-level", "warning").split("\n--stdout--\n")[0]
    assert "program failed" in log and "call attempt failed" in log
    assert "program started" not in log and "worker started" not in log
    db.close()
    bad = _flowmetal(node, "worker", "--store", store, "--log-format", "xml")
    assert bad.returncode == 2 and "xml" in bad.stderr and "Traceback" not in bad.stderr


WAITING = '''from flowmetal import receive, sleep

def main(n=1):
    print("waiting for", n)
    sleep(0.01)
    got = receive()
    print("got", got)
    return got["x"] * n
'''


def test_logs_prints_output_and_events_and_follows_to_the_end(node: Path) -> None:
    (node / "waiting.flow").write_text(WAITING)
    store = f"sqlite:///{node / 's.db'}"
    env = _env(node)
    assert _flowmetal(node, "start", "waiting.flow", "--id", "w1", "--args", '{"n": 3}', "--store", store).returncode == 0
    worker = subprocess.Popen([sys.executable, "-m", "flowmetal", "worker", "--store", store], cwd=node, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    follow = subprocess.Popen([sys.executable, "-m", "flowmetal", "logs", "w1", "--follow", "--store", store],
                              cwd=node, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        db = open_store(store)
        wait_for(lambda: db.get_program("w1").status == "waiting" and db.get_program("w1").wake_at is None)
        assert follow.poll() is None  # still following
        assert _flowmetal(node, "send", "w1", '{"x": 5}', "--store", store).returncode == 0
        out, err = follow.communicate(timeout=30)
        assert follow.returncode == 0 and err == ""
        lines = out.splitlines()
        summaries = [line.split(maxsplit=3)[3] for line in lines]
        assert summaries[0] == "started waiting.flow with {\"n\": 3}"
        assert "waiting for 3" in summaries and "got {'x': 5}" in summaries
        assert "sleep(0.01) ended" in summaries
        assert 'received on "inbox": {"x": 5}' in summaries
        assert summaries[-1] == "completed with 15"
        # without --follow: what is there now, the same lines
        again = _flowmetal(node, "logs", "w1", "--store", store)
        assert again.stdout == out
        as_json = [json.loads(x) for x in _flowmetal(node, "logs", "w1", "--json", "--store", store).stdout.splitlines()]
        assert [e["seq"] for e in as_json] == list(range(1, len(lines) + 1))
        missing = _flowmetal(node, "logs", "nope", "--store", store)
        assert missing.returncode == 2 and "nope" in missing.stderr and "Traceback" not in missing.stderr
        db.close()
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
        kill_all([worker, follow])


# -- metrics -----------------------------------------------------------------------------------------

CALLING = '''from flowmetal import call, callback, sleep

def main(n=1):
    sleep(0.05)
    cb = callback()
    print("callback", cb.url)
    req = cb.wait()
    return call("double", n)
'''


class Serve:
    def __init__(self, tmp: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.store = f"sqlite:///{tmp / 'serve.db'}"
        self.proc = subprocess.Popen([sys.executable, "-m", "flowmetal", "serve", "--store", self.store, "--port", "0",
                                      *args], cwd=tmp, env=env or _env(tmp), stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.startswith("flowmetal: serving on "), line
        self.url = line.split()[3]
        wait_for(self._healthy, 15)

    def _healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/health").status_code == 200
        except httpx.TransportError:
            return False

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=30)
        kill_all([self.proc])
        return err


def _scrape(http: httpx.Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = http.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def _value(m: dict[tuple[str, tuple[tuple[str, str], ...]], float], metric: str, /, **labels: str) -> float:
    return m.get((metric, tuple(sorted(labels.items()))), 0.0)


def test_metrics_are_scraped_and_move_as_programs_run(node: Path) -> None:
    (node / "calling.flow").write_text(CALLING)
    serve = Serve(node, "--functions", "fns.py", "--token", "tok")
    try:
        http = httpx.Client(base_url=serve.url, headers={"Authorization": "Bearer tok"}, timeout=30)
        assert httpx.get(f"{serve.url}/metrics").status_code == 401  # behind the token
        before = _scrape(http)
        assert _value(before, "flowmetal_programs", status="completed") == 0
        ids = [http.post("/programs", json={"path": "calling.flow", "args": {"n": n}}).json()["id"] for n in (1, 2)]
        db = open_store(serve.store)

        def url_of(pid: str) -> str | None:
            for e in db.events(pid):
                if e.type == "output" and e.data["text"].startswith("callback "):
                    return str(e.data["text"].split()[1])
            return None

        wait_for(lambda: all(url_of(pid) for pid in ids))
        waiting = _scrape(http)
        assert _value(waiting, "flowmetal_programs", status="waiting") == 2
        assert _value(waiting, "flowmetal_wakeup_latency_seconds_count") == 2  # both sleeps fired
        for pid in ids:
            assert httpx.post(str(url_of(pid)), json={"ok": True}).status_code == 202
        # used (409), or gone if its program has ended meanwhile (410): counted as a duplicate either way
        assert httpx.post(str(url_of(ids[0])), json={}).status_code in (409, 410)
        wait_for(lambda: all(db.get_program(pid).status == "completed" for pid in ids))
        after = _scrape(http)
        assert _value(after, "flowmetal_programs", status="completed") == 2
        assert _value(after, "flowmetal_programs", status="waiting") == 0
        assert _value(after, "flowmetal_programs_ended_total", status="completed") == 2
        assert _value(after, "flowmetal_programs_started_total") == 2
        assert _value(after, "flowmetal_slices_total", outcome="completed") == 2
        assert _value(after, "flowmetal_slices_total", outcome="waiting") >= 4
        steps = _value(after, "flowmetal_steps_total")
        assert steps == sum(db.get_program(pid).last_seq - 1 for pid in ids)  # every event but `started`
        assert _value(after, "flowmetal_call_attempts_total", kind="function", name="double", outcome="ok") == 2
        assert _value(after, "flowmetal_call_duration_seconds_count", kind="function", name="double",
                      outcome="ok") == 2
        assert _value(after, "flowmetal_callback_deliveries_total", status="accepted") == 2
        assert _value(after, "flowmetal_callback_deliveries_total", status="duplicate") == 1
        assert _value(after, "flowmetal_slice_duration_seconds_count") > _value(waiting,
                                                                                  "flowmetal_slice_duration_seconds_count")
        assert _value(after, "flowmetal_commit_duration_seconds_count") >= 4
        assert _value(after, "flowmetal_store_errors_total", operation="worker") == 0
        db.close()
    finally:
        err = serve.stop()
    assert "Traceback" not in err


def test_worker_serves_metrics_on_its_own_port(node: Path) -> None:
    store = f"sqlite:///{node / 's.db'}"
    _flowmetal(node, "start", "failing.flow", "--id", "pay-3", "--store", store)
    db = open_store(store)
    port_log: list[str] = []
    p = subprocess.Popen([sys.executable, "-m", "flowmetal", "worker", "--store", store, "--functions", "fns.py",
                          "--metrics-port", "0", "--log-format", "json"], cwd=node, env=_env(node),
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stderr is not None
        for line in p.stderr:
            port_log.append(line)
            record = json.loads(line)
            if record["message"] == "serving metrics":
                url = record["url"]
                break
        wait_for(lambda: db.get_program("pay-3").status == "failed")
        m = _scrape(httpx.Client(base_url=url.removesuffix("/metrics"), timeout=10))
        assert _value(m, "flowmetal_call_attempts_total", kind="function", name="charge", outcome="error") == 2
        assert _value(m, "flowmetal_programs", status="failed") == 1
        assert _value(m, "flowmetal_programs_ended_total", status="failed") == 1
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(30)
        kill_all([p])
        db.close()


# -- traces -------------------------------------------------------------------------------------------

TRACED = '''from flowmetal import call, http

def main(url):
    n = call("double", 21)
    r = http.get(url)
    return {"n": n, "status": r.status}
'''


@pytest.fixture
def echo_server() -> Iterator[tuple[str, list[dict[str, str]]]]:
    seen: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append({k.lower(): v for k, v in self.headers.items()})
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/thing", seen
    server.shutdown()
    server.server_close()


def _spans(stdout: str) -> list[dict[str, Any]]:
    decoder, spans, i = json.JSONDecoder(), [], 0
    while True:
        while i < len(stdout) and stdout[i].isspace():
            i += 1
        if i >= len(stdout):
            return spans
        span, i = decoder.raw_decode(stdout, i)
        spans.append(span)


def _run_traced(node: Path, url: str, program_id: str, env: dict[str, str] | None = None) -> tuple[str, dict[str, str]]:
    """Run traced.flow to its end in a `flowmetal worker`; (its stdout, what the function got in ctx)."""
    (node / "traced.flow").write_text(TRACED)
    store = f"sqlite:///{node / 's.db'}"
    _flowmetal(node, "start", "traced.flow", "--id", program_id, "--args", json.dumps({"url": url}), "--store", store)
    db = open_store(store)
    try:
        out = _run_worker_until(node, store, lambda: db.get_program(program_id).status == "completed",
                                "--functions", "fns.py", env=env).split("\n--stdout--\n")[1]
        assert db.get_program(program_id).result == {"n": 42, "status": 200}
    finally:
        db.close()
    (ctx,) = [json.loads(line) for line in (node / "ctx.jsonl").read_text().splitlines()]
    return out, ctx


def test_traces_follow_a_program_into_its_calls_and_http_requests(
        node: Path, echo_server: tuple[str, list[dict[str, str]]]) -> None:
    from flowmetal.observe.tracing import program_span_id, trace_id_for

    url, seen = echo_server
    env = _env(node, OTEL_TRACES_EXPORTER="console", OTEL_SERVICE_NAME="fm-test", OTEL_BSP_SCHEDULE_DELAY="100")
    out, ctx = _run_traced(node, url, "tr-1", env)
    spans = _spans(out)
    trace_id = trace_id_for("tr-1")
    assert {s["context"]["trace_id"] for s in spans} == {"0x" + trace_id}
    by_name: dict[str, list[dict[str, Any]]] = {}
    for s in spans:
        by_name.setdefault(s["name"], []).append(s)
    (program,) = by_name["program traced.flow"]
    assert program["context"]["span_id"] == "0x" + program_span_id("tr-1") and program["parent_id"] is None
    assert program["attributes"]["flowmetal.program.status"] == "completed"
    assert program["resource"]["attributes"]["service.name"] == "fm-test"
    children = [s for s in spans if s is not program]
    assert all(s["parent_id"] == "0x" + program_span_id("tr-1") for s in children)
    assert len(by_name["slice"]) >= 2
    (call,) = by_name["call double"]
    assert call["kind"] == "SpanKind.CLIENT" and call["attributes"]["flowmetal.call.name"] == "double"
    (request,) = by_name["HTTP GET"]
    # the function got the trace id and its span's context; the HTTP server its traceparent
    assert ctx["trace_id"] == trace_id
    assert ctx["traceparent"] == f"00-{trace_id}-{call['context']['span_id'][2:]}-01"
    assert seen[0]["traceparent"] == f"00-{trace_id}-{request['context']['span_id'][2:]}-01"


def test_without_tracing_the_trace_id_is_still_handed_on(
        node: Path, echo_server: tuple[str, list[dict[str, str]]]) -> None:
    from flowmetal.observe.tracing import trace_id_for

    url, seen = echo_server
    out, ctx = _run_traced(node, url, "tr-2")
    assert out == ""  # no spans printed anywhere
    assert ctx["trace_id"] == trace_id_for("tr-2")
    version, trace, span, flags = seen[0]["traceparent"].split("-")
    assert (version, trace, flags) == ("00", trace_id_for("tr-2"), "00") and len(span) == 16


# -- what the store tells operators (both backends) ---------------------------------------------------

def test_store_counts_programs_by_status_and_reports_lease_takeovers(any_store: Any) -> None:
    from flowmetal.lang.program import source_hash
    from flowmetal.store.base import Commit, NewProgram

    source = "print(1)\n"
    assert any_store.count_programs() == {}
    for i in range(3):
        any_store.create_program(NewProgram(f"p{i}", "x.flow", source, source_hash(source), {}), 100.0)
    assert any_store.count_programs() == {"running": 3}
    (first,) = any_store.claim("w1", 999_999, "elsewhere", 5.0, 100.0, 1, only="p0")
    assert not first.took_over
    any_store.commit([Commit("p0", first.fence, 1, events=[("completed", {"result": 1})], status="completed",
                             result=1)], 100.5)
    (second,) = any_store.claim("w1", 999_999, "elsewhere", 5.0, 101.0, 1, only="p1")
    assert not second.took_over
    # w1's lease on p1 runs out without a commit: w2 takes it over
    (taken,) = any_store.claim("w2", 999_998, "elsewhere", 5.0, 107.0, 1, only="p1")
    assert taken.program_id == "p1" and taken.took_over and taken.fence == second.fence + 1
    assert any_store.count_programs() == {"running": 2, "completed": 1}


def test_a_worker_reports_taking_over_an_expired_lease(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from flowmetal.observe import metrics
    from flowmetal.runtime.driver import Runtime
    from flowmetal.runtime.worker import Worker

    (tmp_path / "w.flow").write_text(WAITING)
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    rt = Runtime(store)
    rt.start(str(tmp_path / "w.flow"), {}, program_id="taken")
    # a worker on another machine claims it and is never heard from again
    assert len(store.claim("gone", 999_999, "another-host", 0.05, time.time(), 1)) == 1
    time.sleep(0.1)
    before = metrics.LEASE_TAKEOVERS._value.get()
    with caplog.at_level("INFO", logger="flowmetal"):
        Worker(rt, notify=False).run(idle_exit=True)
    assert store.get_program("taken").last_seq > 1  # this worker ran it
    assert metrics.LEASE_TAKEOVERS._value.get() == before + 1
    (record,) = [r for r in caplog.records if r.getMessage().startswith("lease taken over")]
    assert record.name == "flowmetal.worker" and record.fields == {"program": "taken"}  # type: ignore[attr-defined]
    store.close()


def test_run_shows_failed_attempts_with_the_functions_traceback(node: Path) -> None:
    store = f"sqlite:///{node / 's.db'}"
    r = _flowmetal(node, "run", "failing.flow", "--functions", "fns.py", "--store", store)
    assert r.returncode == 1 and r.stdout == "charging\n"
    attempts = [line for line in r.stderr.splitlines() if "WARNING calls: call attempt failed" in line]
    assert len(attempts) == 2 and "name=charge" in attempts[0]
    assert 'fns.py", line 6, in charge' in r.stderr
    assert "program failed" not in r.stderr  # the command reports the program's end itself
    assert r.stderr.rstrip().endswith("flowmetal.CallError: ValueError: card declined")


def test_listing_by_text_matches_the_id_or_the_file(any_store: Any) -> None:
    from flowmetal.lang.program import source_hash
    from flowmetal.store.base import NewProgram, ProgramQuery

    source = "print(1)\n"
    for pid, file in (("order-1", "a/shop.flow"), ("order-2", "b/billing.flow"), ("misc", "orders/x.flow")):
        any_store.create_program(NewProgram(pid, file, source, source_hash(source), {}), 100.0)
    ids = lambda text: sorted(r.id for r in any_store.page_programs(ProgramQuery(text=text)).programs)  # noqa: E731
    assert ids("order") == ["misc", "order-1", "order-2"]  # ids, and a file under orders/
    assert ids("billing") == ["order-2"] and ids("100%") == [] and ids("_") == []  # no LIKE wildcards
    assert ids("Order") == []  # case-sensitive, like `file`
