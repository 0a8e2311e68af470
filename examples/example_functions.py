"""Foreign functions for the connector examples (payment_saga.flow, fanout.flow),
served with `--functions examples/example_functions.py`.

The inventory functions wrap the warehouse of examples/services.py (at
$FLOWMETAL_EXAMPLE_SERVICES, default http://127.0.0.1:8500): they pass the
call's idempotency key on, so a call retried after a crash never holds, releases
or ships twice. The geocoder is a small table; some places fail now and then
(retried), and places it does not know fail every time.
"""

import os
import time

import httpx

import flowmetal

SERVICES = os.environ.get("FLOWMETAL_EXAMPLE_SERVICES", "http://127.0.0.1:8500")


class OutOfStock(flowmetal.NonRetryable):  # fails the call at once: retrying will not help
    pass


class GeocoderError(Exception):
    pass


def _warehouse(ctx, path, body):
    r = httpx.post(f"{SERVICES}{path}", json=body, headers={"Idempotency-Key": ctx.idempotency_key},
                   timeout=10)
    if r.status_code == 409 and path == "/inventory/holds":
        raise OutOfStock(r.json()["message"])
    r.raise_for_status()  # other errors fail this attempt; the call is retried per its policy
    return r.json()


@flowmetal.function("inventory.reserve")
def reserve(ctx, sku, qty, order):
    return _warehouse(ctx, "/inventory/holds", {"sku": sku, "qty": qty, "order": order})["hold_id"]


@flowmetal.function("inventory.release")
def release(ctx, hold_id):
    return _warehouse(ctx, f"/inventory/holds/{hold_id}/release", {})["status"]


@flowmetal.function("inventory.ship")
def ship(ctx, hold_id, address):
    return _warehouse(ctx, f"/inventory/holds/{hold_id}/ship", {"address": address})["tracking"]


PLACES = {
    "Amsterdam": (52.37, 4.90), "Berlin": (52.52, 13.40), "Lisbon": (38.72, -9.14),
    "Madrid": (40.42, -3.70), "Oslo": (59.91, 10.75), "Paris": (48.86, 2.35),
    "Prague": (50.08, 14.44), "Rome": (41.90, 12.50), "Vienna": (48.21, 16.37),
    "Warsaw": (52.23, 21.01), "Dublin": (53.35, -6.26), "Athens": (37.98, 23.73),
}
FLAKY = {"Oslo"}  # the upstream geocoder is rate-limited for these: the first attempt fails


@flowmetal.function("geo.lookup")
def lookup(ctx, places, delay=0.0):
    """Coordinates of a batch of places: {"Paris": [48.86, 2.35], ...}."""
    time.sleep(delay)
    if ctx.attempt == 1 and FLAKY.intersection(places):
        raise ConnectionError("geocoder rate limit hit, try again")
    unknown = [p for p in places if p not in PLACES]
    if unknown:
        raise GeocoderError(f"no coordinates for {', '.join(unknown)}")
    return {p: list(PLACES[p]) for p in places}
