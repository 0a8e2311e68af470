"""The security suite: one file per kind of attack (see each file's docstring)."""

from __future__ import annotations

import sys
from pathlib import Path

# the shared helpers of the tests one directory up (cli_checks, the API server fixture)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
