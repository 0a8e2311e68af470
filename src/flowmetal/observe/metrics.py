"""Prometheus metrics (prometheus-client), served at `/metrics` by `flowmetal serve`
and by `--metrics-port` of `worker` and `functions`.

The counters and histograms count what this process did; `flowmetal_programs`
(programs by status) is read from the store when scraped, so it is the same
whichever node is asked. Names, labels and meaning are listed in docs/operations.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

REGISTRY = CollectorRegistry(auto_describe=True)

# short work (slices, commits, timers) and long work (foreign calls, HTTP requests)
_FAST = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_SLOW = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)

SLICES = Counter("flowmetal_slices", "Slices run, by how they ended (waiting, completed, failed, cancelled, "
                 "lost: another worker's commit won, error: the slice broke)", ["outcome"], registry=REGISTRY)
STEPS = Counter("flowmetal_steps", "Durable steps (events) recorded by committed slices", registry=REGISTRY)
SLICE_SECONDS = Histogram("flowmetal_slice_duration_seconds", "Time to run one slice (load, run, record), "
                          "not counting its commit", buckets=_FAST, registry=REGISTRY)
COMMIT_SECONDS = Histogram("flowmetal_commit_duration_seconds", "Time of one store commit of a group of slices",
                           buckets=_FAST, registry=REGISTRY)
PROGRAMS_ENDED = Counter("flowmetal_programs_ended", "Programs this process ran to their end, by status",
                         ["status"], registry=REGISTRY)
PROGRAMS_STARTED = Counter("flowmetal_programs_started", "Programs whose first slice this process ran",
                           registry=REGISTRY)
CALL_ATTEMPTS = Counter("flowmetal_call_attempts", "Attempts at foreign calls and HTTP requests performed here, "
                        "by kind, name and outcome (ok, error)", ["kind", "name", "outcome"], registry=REGISTRY)
CALL_SECONDS = Histogram("flowmetal_call_duration_seconds", "Duration of one attempt at a call",
                         ["kind", "name", "outcome"], buckets=_SLOW, registry=REGISTRY)
CALLBACKS = Counter("flowmetal_callback_deliveries", "Requests to callback URLs, by answer "
                    "(accepted, duplicate, unknown, refused: a body that does not fit)", ["status"], registry=REGISTRY)
LEASE_TAKEOVERS = Counter("flowmetal_lease_takeovers", "Programs claimed from a holder whose lease ran out "
                          "or whose process died", registry=REGISTRY)
ATTEMPTS_LOST = Counter("flowmetal_call_attempts_lost", "Attempts at calls lost with the process that held "
                        "them (run again at once, not counted against the retry policy)", registry=REGISTRY)
WAKEUP_SECONDS = Histogram("flowmetal_wakeup_latency_seconds", "How late a timer (sleep, timeout) fired: "
                           "from its due time to the slice that delivered it", buckets=_FAST, registry=REGISTRY)
STORE_ERRORS = Counter("flowmetal_store_errors", "Store operations that failed (unreachable, broken), by operation",
                       ["operation"], registry=REGISTRY)


_children: dict[tuple[Any, tuple[str, ...]], Any] = {}


def labelled(metric: Any, *values: str) -> Any:
    """`metric.labels(*values)`, kept: prometheus-client's `labels` costs more than the count
    itself, and the hot paths (every slice, every call) ask for the same few children."""
    key = (metric, values)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*values)
    return child


class Timer:
    """`with Timer() as t: ...` then `t.seconds`."""

    __slots__ = ("seconds", "start")

    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: Any) -> None:
        self.seconds = time.perf_counter() - self.start


class ProgramsByStatus(Collector):
    """`flowmetal_programs{status=...}`: the store's programs by status, counted when scraped."""

    def __init__(self, counts: Callable[[], dict[str, int]], statuses: Iterable[str]) -> None:
        self.counts = counts
        self.statuses = tuple(statuses)

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily("flowmetal_programs", "Programs in the store, by status", labels=["status"])
        try:
            counts = self.counts()
        except Exception:  # the store is unreachable: the scrape still answers, with the error counted
            STORE_ERRORS.labels("count_programs").inc()
            return
        for status in self.statuses:
            family.add_metric([status], counts.get(status, 0))
        yield family

    def describe(self) -> Iterator[Metric]:
        return iter(())


def exposition(*extra: CollectorRegistry) -> tuple[bytes, str]:
    """The text format of this process's metrics (and of `extra` registries), and its content type."""
    body = generate_latest(REGISTRY) + b"".join(generate_latest(r) for r in extra)
    return body, CONTENT_TYPE_LATEST


def store_registry(counts: Callable[[], dict[str, int]], statuses: Iterable[str]) -> CollectorRegistry:
    """A registry of what is read from a store at scrape time (one per served store)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ProgramsByStatus(counts, statuses))
    return registry


class _Combined(Collector):
    def __init__(self, *registries: CollectorRegistry) -> None:
        self.registries = registries

    def collect(self) -> Iterator[Metric]:
        for registry in self.registries:
            yield from registry.collect()


def serve_http(port: int, counts: Callable[[], dict[str, int]], statuses: Iterable[str],
               host: str = "127.0.0.1") -> int:
    """Serve /metrics (this process's and the store's) on a background thread; the bound port."""
    from prometheus_client import start_http_server

    combined = CollectorRegistry(auto_describe=False)
    combined.register(_Combined(REGISTRY, store_registry(counts, statuses)))
    server, _thread = start_http_server(port, addr=host, registry=combined)
    return int(server.server_port)
