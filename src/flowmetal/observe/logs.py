"""One line per event worth an operator's attention, through the standard `logging`.

Loggers live under "flowmetal": `flowmetal.programs` (started, completed, failed,
cancelled), `flowmetal.calls` (an attempt failed), `flowmetal.worker` (leases taken
over, slices that broke), `flowmetal.store` (unavailable, back), `flowmetal.serve`.
A record carries its structured fields in `extra={"fields": {...}}` (see `event()`);
the human format appends them as `key=value` (a `traceback` field, a foreign function's
own, goes on indented lines below), the JSON format as members.

    2026-12-07T20:49:02.123Z WARNING calls: call attempt failed  key=abc:7 name=charge attempt=1 error="ValueError: no"
    {"time": "2026-12-07T20:49:02.123Z", "level": "warning", "logger": "flowmetal.calls", "message": "call attempt failed", "key": "abc:7", ...}

Long-running commands (`worker`, `serve`, `functions`) call `configure()` with their
`--log-format` and `--log-level`; a library user configures `logging` as they like.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
from typing import IO, Any

ROOT = "flowmetal"
FORMATS = ("human", "json")
LEVELS = ("debug", "info", "warning", "error")


def logger(name: str) -> logging.Logger:
    """The logger `flowmetal.NAME`."""
    return logging.getLogger(f"{ROOT}.{name}")


def event(log: logging.Logger, level: int, message: str, /, **fields: Any) -> None:
    """Log `message` with structured fields (cheap when the level is off)."""
    if log.isEnabledFor(level):
        log.log(level, message, extra={"fields": fields})


def _time(record: logging.LogRecord) -> str:
    when = datetime.datetime.fromtimestamp(record.created, tz=datetime.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(record.msecs):03d}Z"


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = getattr(record, "fields", None)
    return fields if isinstance(fields, dict) else {}


def _short_name(record: logging.LogRecord) -> str:
    name = record.name
    return name[len(ROOT) + 1:] if name.startswith(ROOT + ".") else name


class HumanFormatter(logging.Formatter):
    """`TIME LEVEL logger: message  key=value ...` (values with spaces are JSON-quoted)."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [f"{_time(record)} {record.levelname:<7} {_short_name(record)}: {record.getMessage()}"]
        fields = dict(_fields(record))
        trace = fields.pop("traceback", None)  # (a foreign function's own: on the lines below)
        if fields:
            parts.append("  " + " ".join(f"{k}={_human_value(v)}" for k, v in fields.items() if v is not None))
        if isinstance(trace, str) and trace.strip():
            parts.append("\n" + "\n".join("    " + line for line in trace.rstrip("\n").splitlines()))
        if record.exc_info:
            parts.append("\n" + self.formatException(record.exc_info))
        return "".join(parts)


def _human_value(value: Any) -> str:
    if isinstance(value, str):
        return value if value and not any(c.isspace() or c in "\"=" for c in value) else json.dumps(value)
    if isinstance(value, float):
        return f"{value:.6g}"
    return json.dumps(value, default=str)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, then the record's fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {"time": _time(record), "level": record.levelname.lower(), "logger": record.name,
                               "message": record.getMessage()}
        for key, value in _fields(record).items():
            out.setdefault(key, value)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


_installed: list[logging.Handler] = []  # the handlers configure() added


class _Stderr(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is when a record comes (a test may have swapped it)."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self) -> IO[str]:
        return sys.stderr

    @stream.setter
    def stream(self, value: IO[str]) -> None:
        pass


def configure(fmt: str = "human", level: str = "info", stream: IO[str] | None = None) -> logging.Handler:
    """Send Flowmetal's logs (and uvicorn's errors) to `stream` (stderr) in `fmt` at `level`."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown log format {fmt!r} (use {' or '.join(FORMATS)})")
    handler: logging.Handler = logging.StreamHandler(stream) if stream is not None else _Stderr()
    handler.setFormatter(JsonFormatter() if fmt == "json" else HumanFormatter())
    for name in (ROOT, "uvicorn.error"):
        log = logging.getLogger(name)
        for old in list(log.handlers):
            if old in _installed:  # (configured again: replace, never add a second one)
                log.removeHandler(old)
        log.addHandler(handler)
        log.setLevel(level.upper())
        log.propagate = False
    _installed.append(handler)
    return handler


def for_foreground() -> None:
    """For commands that show a program themselves (`run`, `resume`): warnings only (a call
    attempt that failed, with its function's traceback; the store gone), in the human
    format; the program's end is the command's to report, not the log's."""
    configure("human", "warning")
    logger("programs").setLevel(logging.ERROR)
