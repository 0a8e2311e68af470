"""The OpenAPI document against the server it describes: schemathesis (property-based,
from the document alone) runs against a real `flowmetal serve` and must find nothing —
no 5xx, no status or body the document does not declare, nothing the document allows
that the server refuses, nothing it forbids that the server takes.

Bounded: a fixed seed, a few dozen examples per operation, long-polls capped at 0.2 s
(`--max-wait`), and a hard timeout on the run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from test_api import TOKEN, Server

ST = Path(sys.executable).with_name("st")
# POST /programs: a body the schema allows can still be refused with 422 for what no schema
# can say: a `source` the compiler rejects, or a `path` the server cannot read as a program
CONFIG = """
[[operations]]
include-path = "/programs"
include-method = "POST"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "404", "409", "422"]
"""


@pytest.mark.skipif(not ST.exists(), reason="schemathesis is not installed (pip install -e '.[test]')")
def test_schemathesis_finds_nothing(tmp_path: Path) -> None:
    server = Server(tmp_path, "--no-worker", "--max-wait", "0.2", token=TOKEN)
    try:
        config = tmp_path / "schemathesis.toml"
        config.write_text(CONFIG)
        r = subprocess.run(
            [str(ST), "--config-file", str(config), "--no-color", "run", f"{server.url}/openapi.json",
             "-H", f"Authorization: Bearer {TOKEN}", "--checks", "all", "--max-examples", "30", "--seed", "20261201",
             "--workers", "1", "--request-timeout", "10", "--report-dir", str(tmp_path / "report")],
            capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
        assert "Tested: 0" not in r.stdout and "API Operations:" in r.stdout, r.stdout[-2000:]
    finally:
        server.stop()


def test_405_names_every_allowed_method(tmp_path: Path) -> None:
    server = Server(tmp_path, "--no-worker")
    try:
        for path, allowed in (("/programs", {"GET", "HEAD", "POST"}), ("/programs/x", {"GET", "HEAD"}),
                              ("/callbacks/x", {"POST", "PUT", "PATCH"})):
            r = server.http.delete(path)
            assert r.status_code == 405 and r.json()["error"]["type"] == "MethodNotAllowed"
            assert {m.strip() for m in r.headers["allow"].split(",")} >= allowed, (path, r.headers["allow"])
        # without a token the document asks for none; with one (test_schemathesis_finds_nothing) it does
        doc = server.http.get("/openapi.json").json()
        assert "security" not in doc and all(op["security"] == [] for ops in doc["paths"].values()
                                             for op in ops.values())
        assert httpx.head(f"{server.url}/health").status_code == 200
    finally:
        server.stop()
