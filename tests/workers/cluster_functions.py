"""Functions for the cluster tests (tests/flows/cluster_job.flow). Each attempt
appends `start`/`end` lines to a ledger file (FLOWMETAL_TEST_LEDGER) with the
call's key, attempt and the serving process, so the test can tell which calls
a killed worker had in flight and which were retried elsewhere."""

import os
import time

import flowmetal

LEDGER = os.environ.get("FLOWMETAL_TEST_LEDGER")
PAUSE = 0.03  # long enough for a kill -9 to land mid-call now and then


def _log(kind: str, ctx) -> None:
    if LEDGER:
        # one write() of a short line in append mode: lines from several processes never mix
        with open(LEDGER, "a") as f:
            f.write(f"{kind} {ctx.idempotency_key} {ctx.attempt} {os.getpid()}\n")


@flowmetal.function("cluster.add")
def add(ctx, x, y):
    _log("start", ctx)
    time.sleep(PAUSE)
    _log("end", ctx)
    return x + y


@flowmetal.function("cluster.mul")
def mul(ctx, x, y):
    _log("start", ctx)
    time.sleep(PAUSE)
    _log("end", ctx)
    return x * y
