"""Functions for the connector crash test: each call appends to a ledger file
before and after a slow step, so the test can kill the worker mid-call."""

import os
import time

import flowmetal

LEDGER = os.environ["FLOWMETAL_TEST_LEDGER"]


def _log(line: str) -> None:
    with open(LEDGER, "a") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


@flowmetal.function("ledger.add")
def add(ctx, total, amount):
    _log(f"start {ctx.idempotency_key} {ctx.attempt} {os.getpid()}")
    time.sleep(0.3)
    _log(f"end {ctx.idempotency_key} {ctx.attempt} {os.getpid()}")
    return total + amount
