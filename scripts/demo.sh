#!/usr/bin/env bash
# Install Flowmetal into .venv and show a whole node surviving kill -9: a durable
# order workflow calling foreign functions (with a retried payment), sleeping on
# durable timers, and waiting for a human approval on a callback URL.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e .
export FLOWMETAL_STORE=sqlite:///demo.db FLOWMETAL_DEMO_LEDGER=demo-ledger.txt
rm -rf demo.db demo.db-wal demo.db-shm demo.db.wake demo-ledger.txt
fm=.venv/bin/flowmetal
port=$(.venv/bin/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
api=http://127.0.0.1:$port
node=""
trap '[ -n "$node" ] && kill $node 2>/dev/null || true' EXIT

start_node() {  # one process: HTTP API + callbacks, interpreter, timers, HTTP connector, functions
  $fm serve --port "$port" --public-url "$api" --functions examples/shop_functions.py >>demo-node.log 2>&1 &
  node=$!
  for _ in $(seq 100); do curl -fs "$api/health" >/dev/null 2>&1 && return; sleep 0.1; done
  echo "the node did not start; see demo-node.log" >&2; exit 1
}

echo "== starting a Flowmetal node (flowmetal serve) on $api"
start_node
id=saga-$$
echo "== starting examples/order_saga.flow as $id over the HTTP API"
curl -fs -X POST "$api/programs" -H 'content-type: application/json' \
  -d "{\"path\": \"examples/order_saga.flow\", \"id\": \"$id\", \"args\": {\"orders\": 4}}" >/dev/null
# let it get going (orders charged, parcels being packed), then pull the plug
for _ in $(seq 100); do
  $fm history "$id" 2>/dev/null | grep -q "packed" && break; sleep 0.1
done
kill -9 "$node"; wait "$node" 2>/dev/null || true
echo "== node killed with SIGKILL mid-run; the program is $($fm status "$id" | head -n 1) in the store"
# a program's output after event $2 (its printed lines are events too)
output_after() {
  $fm history "$1" --json | .venv/bin/python -c '
import json, sys
for line in sys.stdin:
    e = json.loads(line)
    if e["type"] == "output" and e["seq"] > int(sys.argv[1]): print(e["text"], end="")' "$2"
}
at_kill=$($fm history "$id" | wc -l)
echo "== its output so far (events 1-$at_kill):"; output_after "$id" 0
echo "== starting a new node: it carries on where the old one was"
start_node
link=""
for _ in $(seq 200); do
  link=$($fm history "$id" | grep -o "$api/callbacks/[A-Za-z0-9_-]*" | head -n 1 || true)
  [ -n "$link" ] && break; sleep 0.1
done
echo "== the program waits for approval at $link"
echo "== approving: POST -> HTTP $(curl -s -o /dev/null -w '%{http_code}' -X POST "$link" -H 'content-type: application/json' -d '{"approved_by": "Ana"}')"
echo "== approving again: POST -> HTTP $(curl -s -o /dev/null -w '%{http_code}' -X POST "$link" -d '{}') (single-use)"
echo "== result: $($fm result "$id" --wait --timeout 60)"
echo "== output after the restart (from event $((at_kill + 1))):"; output_after "$id" "$at_kill"
echo "== charges made (examples/shop_functions.py keeps a ledger): $(wc -l < demo-ledger.txt) for 4 orders, each once:"
cut -c1-100 demo-ledger.txt
echo "== history: $($fm history "$id" | wc -l) events, each step exactly once; e.g. \`$fm inspect $id --at 20\`"
