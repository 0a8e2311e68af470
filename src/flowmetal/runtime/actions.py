"""The `flowmetal` module programs import: durable actions and their values.

Effects (sleep, now, receive, ...) are requests the runtime answers and
records; concurrency (spawn, wait, timeout) is carried out by the machine.
"""

from __future__ import annotations

from typing import Any

from flowmetal.machine.access import register_kind, visible_class
from flowmetal.machine.objects import EffectFunction
from flowmetal.machine.show import register_leaf
from flowmetal.machine.tasks import Cancelled, Timeout, make_ops
from flowmetal.machine.values import Module
from flowmetal.runtime import outside, secrets

EFFECTS = ("sleep", "now", "random", "randint", "uuid4", "receive", "send", "program_id", "start", "call",
           "callback", "continue_as_new")
HTTP_METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD")


class ChildHandle:
    """What `start(path, **args)` returns: `.id` and `.result(timeout=None)`."""

    __slots__ = ("id",)

    def __init__(self, child_id: str) -> None:
        self.id = child_id

    @property
    def result(self) -> EffectFunction:
        return EffectFunction("child_result", (self.id,))

    def __repr__(self) -> str:
        return f"<program {self.id}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ChildHandle) and other.id == self.id

    def __hash__(self) -> int:
        return hash(("program", self.id))


ChildHandle.__name__ = "Program"


class ChildFailed(Exception):
    """A child program started with `start()` failed or was cancelled."""


ChildFailed.__module__ = "flowmetal"


def host_module() -> dict[str, Any]:
    members: dict[str, Any] = {name: EffectFunction(name) for name in EFFECTS}
    members.update(make_ops())
    members.update(Timeout=Timeout, Cancelled=Cancelled, ChildFailed=ChildFailed)
    members.update(CallError=outside.CallError, HttpError=outside.HttpError, Retry=outside.Retry,
                   secret=secrets.secret)
    http: dict[str, Any] = {"request": EffectFunction("http")}
    http.update({m.lower(): EffectFunction("http", (m,)) for m in HTTP_METHODS})
    http.update(HttpError=outside.HttpError, Response=visible_class(outside.Response))
    members["http"] = Module("flowmetal.http", http)
    return members


def _register_kinds() -> None:
    register_kind(ChildHandle, "flowmetal.Program")
    register_kind(ChildFailed, "flowmetal.ChildFailed")
    register_leaf(ChildHandle)
    outside.register_kinds()
    secrets.register_kinds()


_register_kinds()


def register_codec(codec: Any) -> None:
    codec.register(ChildHandle, "fm.child", state=lambda c: c.id, build=ChildHandle)
    codec.register_exception(ChildFailed, "flowmetal.ChildFailed")
    outside.register_codec(codec)
    secrets.register_codec(codec)
