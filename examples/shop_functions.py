"""Foreign functions for examples/order_saga.flow, served with `--functions`.

Side effects are idempotent on the call's idempotency key: a charge retried
after a crash never charges twice. Every real charge is appended to a ledger
file (FLOWMETAL_DEMO_LEDGER, default demo-ledger.txt) so you can check that.
"""

import json
import os

import flowmetal

LEDGER = os.environ.get("FLOWMETAL_DEMO_LEDGER", "demo-ledger.txt")


class CardDeclined(Exception):
    pass


def _charged() -> dict:
    if not os.path.exists(LEDGER):
        return {}
    with open(LEDGER) as f:
        return {e["key"]: e for e in map(json.loads, f)}


@flowmetal.function("inventory.reserve")
def reserve(ctx, sku, qty):
    return f"hold-{sku}-{qty}-{ctx.idempotency_key}"


@flowmetal.function("inventory.release")
def release(ctx, hold):
    return True


@flowmetal.function("payments.charge")
def charge(ctx, order_id, amount):
    if ctx.attempt == 1 and order_id.endswith("2"):
        raise ConnectionError("payment gateway timed out")  # transient: retried
    if amount > 1000:
        raise CardDeclined(f"{order_id}: amount {amount} over the card limit")
    done = _charged().get(ctx.idempotency_key)
    if done is None:  # charge once per key, whatever the retries
        done = {"key": ctx.idempotency_key, "order": order_id, "amount": amount, "receipt": f"R-{order_id}"}
        with open(LEDGER, "a") as f:
            f.write(json.dumps(done) + "\n")
    return done["receipt"]
