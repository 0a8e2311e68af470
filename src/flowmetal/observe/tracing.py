"""Optional OpenTelemetry traces: a span for each program, its slices, its calls and
HTTP requests, and the API's requests.

Tracing is on when the `opentelemetry` extra is installed and the standard variables
ask for it: `OTEL_TRACES_EXPORTER` (`otlp`, `console`, or both, comma-separated) or an
OTLP endpoint (`OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`);
`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`, `OTEL_BSP_*`
and the exporter's own variables apply as usual; `OTEL_SDK_DISABLED=true` turns it off.

A program lives for days and moves between processes, so its trace is not carried
in memory: its trace id (and its own span's id) are derived from its id, so every
process that touches it — a worker running a slice, a connector performing its call
— puts its spans in the same trace without asking anyone. The program's span is
recorded when the program ends, from its creation to its end; slices, calls and HTTP
requests are its children. Foreign functions get the trace id as `ctx.trace_id`;
HTTP requests carry a W3C `traceparent` header (sampled only when tracing is on).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import hashlib
import os
import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from flowmetal.observe.logs import logger

log = logger("tracing")
_span_ids = random.Random()

_tracer: Any = None  # an opentelemetry Tracer once `setup()` succeeded
_provider: Any = None
_lock = threading.Lock()
# ids a span about to start must take (the program's own span has ids derived from its id)
_forced: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar("flowmetal_forced_ids",
                                                                                  default=None)


@functools.lru_cache(maxsize=4096)  # asked at every call a program makes
def trace_id_for(program_id: str) -> str:
    """The program's trace id: 32 hex digits derived from its id (never all zeros)."""
    digest = hashlib.sha256(b"flowmetal-trace:" + program_id.encode()).hexdigest()[:32]
    return digest if int(digest, 16) else "1".rjust(32, "0")


def program_span_id(program_id: str) -> str:
    """The id of the program's own span: 16 hex digits derived from its id."""
    digest = hashlib.sha256(b"flowmetal-span:" + program_id.encode()).hexdigest()[:16]
    return digest if int(digest, 16) else "1".rjust(16, "0")


def traceparent(trace_id: str, span_id: str, sampled: bool) -> str:
    return f"00-{trace_id}-{span_id}-{'01' if sampled else '00'}"


def enabled() -> bool:
    return _tracer is not None


def _wanted() -> bool:
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporters:
        return exporters != "none"
    return bool(os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def setup(service: str = "flowmetal") -> bool:
    """Turn tracing on if the OTEL_* variables ask for it; True if it is on. Safe to call twice."""
    global _tracer, _provider
    with _lock:
        if _tracer is not None or not _wanted():
            return _tracer is not None
        try:
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
        except ImportError:
            log.warning("OTEL_* variables ask for traces, but the opentelemetry extra is not installed "
                        "(pip install 'flowmetal[opentelemetry]'): no traces")
            return False
        attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": service}
        provider = TracerProvider(resource=Resource.create(attributes), id_generator=_ids())
        names = [n.strip() for n in (os.environ.get("OTEL_TRACES_EXPORTER") or "otlp").lower().split(",")]
        for name in names:
            exporter = _exporter(name)
            if exporter is not None:
                provider.add_span_processor(BatchSpanProcessor(exporter))
        _provider = provider
        _tracer = provider.get_tracer("flowmetal")
        return True


def _exporter(name: str) -> Any:
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if name == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            log.warning("OTEL_TRACES_EXPORTER=otlp needs opentelemetry-exporter-otlp-proto-http "
                        "(pip install 'flowmetal[opentelemetry]')")
            return None
        return OTLPSpanExporter()
    if name != "none":
        log.warning("unknown OTEL_TRACES_EXPORTER %r (use otlp, console or none)", name)
    return None


def _ids() -> Any:
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

    class ForcedIds(RandomIdGenerator):
        """Random ids, except for a span started with `_forced` set (a program's own span)."""

        def generate_span_id(self) -> int:
            forced = _forced.get()
            return forced[1] if forced is not None else super().generate_span_id()

        def generate_trace_id(self) -> int:
            forced = _forced.get()
            return forced[0] if forced is not None else super().generate_trace_id()

    return ForcedIds()


def shutdown() -> None:
    """Export what is buffered (at the end of a long-running command)."""
    global _tracer, _provider
    with _lock:
        if _provider is not None:
            with contextlib.suppress(Exception):
                _provider.shutdown()
        _tracer = _provider = None


def use_for_tests(provider: Any) -> None:
    """Trace into `provider` (an SDK TracerProvider made by a test); None turns tracing off."""
    global _tracer, _provider
    _provider = provider
    _tracer = provider.get_tracer("flowmetal") if provider is not None else None


def id_generator() -> Any:
    """The id generator a TracerProvider needs for programs' own spans (for `use_for_tests`)."""
    return _ids()


# -- spans ---------------------------------------------------------------------------------------

def _program_context(program_id: str) -> Any:
    from opentelemetry import trace

    parent = trace.SpanContext(int(trace_id_for(program_id), 16), int(program_span_id(program_id), 16),
                               is_remote=True, trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED))
    return trace.set_span_in_context(trace.NonRecordingSpan(parent))


def record_slice(program_id: str, start_ns: int, end_ns: int, *, status: str, events: int, seq: int) -> None:
    """A finished slice, as a child span of its program."""
    if _tracer is None:
        return
    span = _tracer.start_span("slice", context=_program_context(program_id), start_time=start_ns,
                              attributes={"flowmetal.program.id": program_id, "flowmetal.slice.status": status,
                                          "flowmetal.slice.events": events, "flowmetal.slice.last_seq": seq})
    span.end(end_time=end_ns)


def record_program(program_id: str, filename: str, status: str, created_at: float, end_ns: int,
                   error: str | None = None) -> None:
    """The program's own span, from its creation to its end (recorded once, when it ends)."""
    if _tracer is None:
        return
    from opentelemetry.trace import Status, StatusCode

    token = _forced.set((int(trace_id_for(program_id), 16), int(program_span_id(program_id), 16)))
    try:
        from opentelemetry.context import Context

        span = _tracer.start_span(f"program {filename}", context=Context(), start_time=int(created_at * 1e9),
                                  attributes={"flowmetal.program.id": program_id, "flowmetal.program.file": filename,
                                              "flowmetal.program.status": status})
    finally:
        _forced.reset(token)
    if status != "completed":
        span.set_status(Status(StatusCode.ERROR, error or status))
    span.end(end_time=end_ns)


@dataclass
class CallSpan:
    trace_id: str
    span_id: str
    sampled: bool
    span: Any = None

    @property
    def traceparent(self) -> str:
        return traceparent(self.trace_id, self.span_id, self.sampled)

    def failed(self, message: str) -> None:
        if self.span is not None:
            from opentelemetry.trace import Status, StatusCode

            self.span.set_status(Status(StatusCode.ERROR, message))


def plain_span(program_id: str) -> CallSpan:
    """The ids an attempt hands on when nothing is traced: the program's trace id and a fresh
    span id (unique, not secret: no system call per call for it)."""
    return CallSpan(trace_id_for(program_id), f"{_span_ids.getrandbits(64) or 1:016x}", False)


@contextlib.contextmanager
def call_span(program_id: str, name: str, attributes: dict[str, Any]) -> Iterator[CallSpan]:
    """A span for one attempt at a call or HTTP request (a client span of the program's trace).
    Without tracing it still yields the ids to hand on (see plain_span)."""
    if _tracer is None:
        yield plain_span(program_id)
        return
    trace_id = trace_id_for(program_id)
    from opentelemetry.trace import SpanKind

    with _tracer.start_as_current_span(name, context=_program_context(program_id), kind=SpanKind.CLIENT,
                                       attributes={"flowmetal.program.id": program_id, **attributes},
                                       record_exception=False, set_status_on_exception=True) as span:
        ctx = span.get_span_context()
        yield CallSpan(trace_id, format(ctx.span_id, "016x"), bool(ctx.trace_flags.sampled), span)


class AsgiTracing:
    """A server span per HTTP request to the API (continuing an incoming `traceparent`)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if _tracer is None or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from opentelemetry.propagate import extract
        from opentelemetry.trace import SpanKind, Status, StatusCode

        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}
        status_code = 0

        async def send_status(message: Any) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = int(message["status"])
            await send(message)

        with _tracer.start_as_current_span(f"HTTP {scope['method']}", context=extract(carrier), kind=SpanKind.SERVER,
                                           attributes={"http.request.method": scope["method"],
                                                       "url.path": scope["path"]}) as span:
            await self.app(scope, receive, send_status)
            span.set_attribute("http.response.status_code", status_code)
            if status_code >= 500:
                span.set_status(Status(StatusCode.ERROR))
