"""The examples run as documented (so the README's demo stays true)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from flowmetal.store import open_store

ROOT = Path(__file__).parent.parent
EXAMPLES = ROOT / "examples"


def test_order_saga_with_its_functions(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.txt"
    env = dict(os.environ, FLOWMETAL_STORE=f"sqlite:///{tmp_path / 'ex.db'}", FLOWMETAL_DEMO_LEDGER=str(ledger))
    r = subprocess.run([sys.executable, "-m", "flowmetal", "run", str(EXAMPLES / "order_saga.flow"), "--id", "saga",
                        "--functions", str(EXAMPLES / "shop_functions.py"), "--args", '{"approval_timeout": 0.5}'],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout.splitlines()[-1])
    assert [o["status"] for o in result["orders"]] == ["shipped"] * 3
    assert result["approved_by"] == "nobody: escalated to a manager"
    assert "approval needed: POST to http://127.0.0.1:8400/callbacks/" in r.stdout
    charges = [json.loads(line) for line in ledger.read_text().splitlines()]
    assert sorted(c["order"] for c in charges) == ["ORD-1", "ORD-2", "ORD-3"]  # each charged once
    store = open_store(env["FLOWMETAL_STORE"])
    attempts = {c.payload["args"][0]: c.attempt for c in store.list_calls("saga") if c.name == "payments.charge"}
    assert attempts == {"ORD-1": 1, "ORD-2": 2, "ORD-3": 1}, [c.to_json() for c in store.list_calls("saga")]  # the hiccup was retried


def test_inventory_example(tmp_path: Path) -> None:
    env = dict(os.environ, FLOWMETAL_STORE=f"sqlite:///{tmp_path / 'inv.db'}")
    r = subprocess.run([sys.executable, "-m", "flowmetal", "run", str(EXAMPLES / "inventory.flow"),
                        "--args", '{"orders": 12}'], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip()
