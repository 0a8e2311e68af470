"""Webhook starts: what an operator configures for `POST /hooks/{name}`, and checking a
request's signature before anything is stored.

A hook either starts a deployment (`action: start`) or sends a message to a program
(`action: send`). The program gets the request as arguments: `body` (the JSON value, or the
text when the body is not JSON), `headers` (only those the hook names, lower-cased) and the
hook's fixed `args`. A delivery-id header (`id_header`, e.g. X-GitHub-Delivery) becomes the
program id `NAME@DELIVERY`, so a redelivered event starts nothing new.

Signatures (HMAC-SHA256 with the hook's secret, compared in constant time):
* `github`: `X-Hub-Signature-256: sha256=HEX` over the raw body;
* `stripe`: `Stripe-Signature: t=TIMESTAMP,v1=HEX[,v1=...]` over `TIMESTAMP.BODY`, refused
  when TIMESTAMP is more than `tolerance` seconds (default 300) from the server's clock —
  a replayed request is stale;
* `none`: no check (only when the operator asks for it explicitly).
The secret is stored with the hook (`secret`) or read from the serving process's
environment at each request (`secret_env`), so it need not be in the store at all.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from typing import Any

from flowmetal.errors import FlowmetalError, UsageError

STYLES = ("github", "stripe", "none")
DEFAULT_TOLERANCE = 300.0
_DELIVERY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,99}")


class BadSignature(FlowmetalError):
    """The request is not signed with the hook's secret (or is too old): nothing is stored."""


class HookMisconfigured(FlowmetalError):
    """The hook names a secret the server does not have."""


def make_config(*, deployment: str | None, style: str, secret: str | None = None, secret_env: str | None = None,
                headers: list[str] | tuple[str, ...] = (), id_header: str | None = None,
                tolerance: float = DEFAULT_TOLERANCE, args: dict[str, Any] | None = None,
                send_to: str | None = None, send_to_header: str | None = None,
                channel: str = "inbox") -> dict[str, Any]:
    """A checked hook configuration (UsageError says what is wrong)."""
    from flowmetal.runtime.deployments import check_name

    if style not in STYLES:
        raise UsageError(f"--style: one of {', '.join(STYLES)}, not {style!r}")
    if style != "none" and not (secret or secret_env):
        raise UsageError(f"a {style}-style hook needs --secret or --secret-env (or --style none, unsigned)")
    if style == "none" and (secret or secret_env):
        raise UsageError("--style none checks no signature: drop --secret/--secret-env")
    sending = send_to is not None or send_to_header is not None
    if sending == (deployment is not None):
        raise UsageError("a hook starts a DEPLOYMENT, or sends to a program (--send-to ID or --send-to-header H)")
    if send_to is not None and send_to_header is not None:
        raise UsageError("give --send-to or --send-to-header, not both")
    if channel.startswith("__"):
        raise UsageError("--channel: names starting with '__' are reserved")
    if tolerance <= 0:
        raise UsageError("--tolerance must be positive")
    return {"action": "send" if sending else "start", "deployment": check_name(deployment) if deployment else None,
            "style": style, "secret": secret, "secret_env": secret_env,
            "headers": sorted({h.lower() for h in headers} | ({id_header.lower()} if id_header else set())),
            "id_header": id_header.lower() if id_header else None, "tolerance": tolerance, "args": args or {},
            "send_to": send_to, "send_to_header": send_to_header.lower() if send_to_header else None,
            "channel": channel}


def public_config(config: dict[str, Any]) -> dict[str, Any]:
    """The configuration without its secret (for listings)."""
    out = dict(config)
    out["secret"] = "***" if config.get("secret") else None
    return out


def _secret(config: dict[str, Any]) -> bytes:
    if config.get("secret"):
        return str(config["secret"]).encode()
    name = config.get("secret_env")
    value = os.environ.get(name or "")
    if not value:
        raise HookMisconfigured(f"the hook's secret is read from ${name}, which this server's environment lacks")
    return value.encode()


def verify(config: dict[str, Any], headers: dict[str, str], body: bytes, now: float) -> None:
    """BadSignature unless the request carries a valid signature for the hook's style."""
    style = config.get("style", "github")
    if style == "none":
        return
    secret = _secret(config)
    if style == "github":
        given = headers.get("x-hub-signature-256", "")
        expected = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
        if not given:
            raise BadSignature("missing X-Hub-Signature-256 header")
        if not hmac.compare_digest(given.strip().encode(), expected.encode()):
            raise BadSignature("the X-Hub-Signature-256 signature does not match the body")
        return
    if style == "stripe":
        parts: dict[str, list[str]] = {}
        for item in headers.get("stripe-signature", "").split(","):
            key, _, value = item.strip().partition("=")
            parts.setdefault(key, []).append(value)
        stamp = (parts.get("t") or [""])[0]
        if not stamp.isdigit() or not parts.get("v1"):
            raise BadSignature("missing or malformed Stripe-Signature header (t=TIMESTAMP,v1=SIGNATURE)")
        expected = hmac.new(secret, stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        if not any(hmac.compare_digest(v.encode(), expected.encode()) for v in parts["v1"]):
            raise BadSignature("the Stripe-Signature signature does not match the body")
        if abs(now - int(stamp)) > float(config.get("tolerance") or DEFAULT_TOLERANCE):
            raise BadSignature("the Stripe-Signature timestamp is outside the replay window")
        return
    raise HookMisconfigured(f"unknown signature style {style!r}")


def delivery_id(config: dict[str, Any], name: str, headers: dict[str, str]) -> str | None:
    """The program id the delivery header names (None without an id header)."""
    header = config.get("id_header")
    if not header:
        return None
    value = headers.get(header, "").strip()
    if not _DELIVERY.fullmatch(value):
        raise UsageError(f"the {header} header must be 1-100 letters, digits, '.', '_', ':' or '-'")
    return f"{name}@{value}"


def program_args(config: dict[str, Any], headers: dict[str, str], body: bytes) -> dict[str, Any]:
    """The program's arguments: the body (JSON, or text), the selected headers, the fixed args."""
    import json

    text = body.decode("utf-8", errors="replace")
    try:
        value: Any = json.loads(text) if text.strip() else None
    except ValueError:
        value = text
    chosen = {h: headers[h] for h in config.get("headers") or [] if h in headers}
    return {**(config.get("args") or {}), "body": value, "headers": chosen}
