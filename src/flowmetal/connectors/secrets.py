"""Where a connector finds the value of `secret("NAME")`, at request time, and how it keeps
the value out of everything it reports.

A node's secrets come from its own configuration, never from programs or the store:

* `FLOWMETAL_SECRET_NAME` environment variables of the connector's process (only that
  prefix: a program must not be able to read any other variable of the node), and
* a secrets file given to `worker`, `serve`, `functions` or `run` (`--secrets FILE`, or
  `FLOWMETAL_SECRETS_FILE`): a JSON object `{"NAME": "value"}`, or `NAME=value` lines
  (`#` comments). The file is read again when it changes; it wins over the environment.

A request's payload says where its secrets go (`"secrets": [{"at": [...], "name", "format"}]`,
see runtime/secrets.py); `resolve` puts the values there. Whatever comes back — a response,
a function's result, an error message or traceback — goes through `redact` before it is
recorded, so a service that echoes a secret does not get it into the log.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flowmetal.errors import UsageError

ENV_PREFIX = "FLOWMETAL_SECRET_"
FILE_ENV = "FLOWMETAL_SECRETS_FILE"
_MIN_REDACTED = 4  # shorter values are not searched for in what comes back (they would match anything)


class SecretMissing(Exception):
    """The node has no value for a secret a request needs."""


class SecretSource:
    """A node's secrets: its FLOWMETAL_SECRET_* variables and its secrets file."""

    def __init__(self, file: str | None = None, environ: Mapping[str, str] | None = None) -> None:
        self.environ = os.environ if environ is None else environ
        self.file = file if file is not None else (self.environ.get(FILE_ENV) or None)
        self._lock = threading.Lock()
        self._stamp: tuple[float, int] | None = None
        self._values: dict[str, str] = {}
        if self.file is not None:
            self._load()  # a missing or malformed file is an error at start, not at the first request

    def _load(self) -> dict[str, str]:
        assert self.file is not None
        path = Path(self.file)
        try:
            st = path.stat()
            stamp = (st.st_mtime, st.st_size)
            if stamp == self._stamp:
                return self._values
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise UsageError(f"--secrets {self.file}: {getattr(e, 'strerror', None) or e}") from None
        self._values, self._stamp = parse_secrets(text, self.file), stamp
        return self._values

    def get(self, name: str) -> str:
        if self.file is not None:
            with self._lock:
                values = self._load()
            if name in values:
                return values[name]
        value = self.environ.get(ENV_PREFIX + name)
        if value is None:
            where = f" or in {self.file}" if self.file else " (or give --secrets FILE)"
            raise SecretMissing(f"secret {name!r} is not configured on this node: set {ENV_PREFIX}{name}{where}")
        return value


def parse_secrets(text: str, where: str) -> dict[str, str]:
    """A secrets file: a JSON object of names to strings, or NAME=value lines."""
    if text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except ValueError as e:
            raise UsageError(f"--secrets {where}: malformed JSON: {e}") from None
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise UsageError(f"--secrets {where}: expected a JSON object of names to strings")
        return dict(data)
    out: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"--secrets {where}:{n}: expected NAME=value")
        out[name.strip()] = value.strip()
    return out


class Resolved:
    """A payload with its secrets in place, and how to hide them again in what comes back."""

    def __init__(self, payload: Any, names: dict[str, str]) -> None:
        self.payload = payload
        self.names = names  # value (or a form of it a service may echo) -> the secret's name

    def redact(self, value: Any) -> Any:
        if not self.names:
            return value
        return _redact(value, sorted(self.names.items(), key=lambda kv: -len(kv[0])))


def resolve(payload: Any, source: SecretSource) -> Resolved:
    """Put the values of the secrets a payload refers to where they go (SecretMissing if one is
    not configured here). The payload itself is not changed."""
    refs = payload.get("secrets") if isinstance(payload, dict) else None
    if not refs:
        return Resolved(payload, {})
    out = copy.deepcopy(payload)
    del out["secrets"]
    names: dict[str, str] = {}
    for ref in refs:
        name = str(ref["name"])
        value = source.get(name)
        fmt = ref.get("format")
        text = fmt.replace("{}", value, 1) if isinstance(fmt, str) else value
        _put(out, list(ref["at"]), text)
        if len(value) >= _MIN_REDACTED:
            names[value] = name
    auth = out.get("auth") if isinstance(out, dict) else None
    if isinstance(auth, dict) and isinstance(auth.get("basic"), list):
        user, password = (str(x) for x in auth["basic"])
        encoded = base64.b64encode(f"{user}:{password}".encode()).decode()
        names[encoded] = "basic auth"  # what a service echoing the Authorization header shows
    return Resolved(out, names)


def _put(target: Any, at: list[Any], value: str) -> None:
    for step in at[:-1]:
        target = target[step]
    target[at[-1]] = value


def _redact(value: Any, pairs: list[tuple[str, str]]) -> Any:
    if isinstance(value, str):
        for secret_value, name in pairs:
            if secret_value in value:
                value = value.replace(secret_value, f"<secret {name}>")
        return value
    if isinstance(value, dict):
        return {_redact(k, pairs): _redact(v, pairs) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact(v, pairs) for v in value]
    return value
