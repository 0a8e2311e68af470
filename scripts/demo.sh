#!/usr/bin/env bash
# Install Flowmetal into .venv and show a durable program surviving kill -9.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e .
export FLOWMETAL_STORE=sqlite:///demo.db
rm -rf demo.db demo.db-wal demo.db-shm demo.db.wake
fm=.venv/bin/flowmetal
id=saga-$$
echo "== running examples/order_saga.flow as $id; killing it with SIGKILL after 1 s"
timeout -s KILL 1 $fm run examples/order_saga.flow --id "$id" --args '{"orders": 4}' || true
echo "== the process is gone; the program is in the store: $($fm status "$id")"
echo "== resuming it in a new process"
$fm resume "$id"
echo "== result: $($fm result "$id")"
echo "== its history: $($fm history "$id" | wc -l) events; the last ones:"
$fm history "$id" | tail -n 4 | cut -c1-150
