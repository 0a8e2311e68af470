"""Durations as people write them: `90s`, `15m`, `12h`, `30d`, `2w`, `1h30m`, or plain seconds."""

from __future__ import annotations

import re

from flowmetal.errors import UsageError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


def parse_duration(text: str, what: str = "duration") -> float:
    """Seconds; UsageError naming `what` if `text` is not a duration."""
    raw = text.strip().lower()
    try:
        value = float(raw)
    except ValueError:
        pos, total = 0, 0.0
        for m in _PART.finditer(raw):
            if m.start() != pos:
                break
            total += float(m.group(1)) * _UNITS[m.group(2)]
            pos = m.end()
        if pos != len(raw) or not raw:
            raise UsageError(f"{what}: {text!r} is not a duration (e.g. 90s, 15m, 12h, 30d, 1h30m)") from None
        value = total
    if value < 0 or value != value or value == float("inf"):
        raise UsageError(f"{what}: {text!r} is not a duration (e.g. 90s, 15m, 12h, 30d, 1h30m)")
    return value


def format_duration(seconds: float) -> str:
    """The shortest exact form: 90 -> '1m30s', 86400 -> '1d'."""
    if seconds != int(seconds):
        return f"{seconds:g}s"
    left, out = int(seconds), []
    for unit in ("w", "d", "h", "m", "s"):
        n, left = divmod(left, _UNITS[unit])
        if n:
            out.append(f"{n}{unit}")
    return "".join(out) or "0s"
