#!/usr/bin/env bash
# Install Flowmetal into .venv and run the main example end to end.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e .
.venv/bin/flowmetal run examples/inventory.flow --args '{"orders": 40}'
