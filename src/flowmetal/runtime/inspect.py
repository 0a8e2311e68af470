"""Describe a program's state at an event: tasks, call stacks with file:line and
function, local variables, and what each task waits for."""

from __future__ import annotations

import time
import types
from typing import Any

from flowmetal.machine.machine import Machine
from flowmetal.machine.objects import Frame
from flowmetal.runtime.waits import describe_wait


def _line(frame: Frame) -> int:
    lines = frame.unit.lines
    if frame.pc in lines:
        return lines[frame.pc]
    earlier = [pc for pc in lines if pc <= frame.pc]
    return lines[max(earlier)] if earlier else frame.unit.lineno


def _locals(frame: Frame, machine: Machine) -> dict[str, str]:
    out: dict[str, str] = {}
    names = frame.unit.local_names
    if frame.unit.is_module:
        return out
    for slot, value in frame.variables().items():
        user = names.get(slot)
        if user is None:
            continue
        if isinstance(value, types.CellType):
            try:
                value = value.cell_contents
            except ValueError:
                continue
        out[user] = _short(repr(value))
    return out


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe(machine: Machine, waits: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    waits_by_request = {int(w["request"]): w for w in (waits or [])}
    tasks = []
    for task in machine.tasks.values():
        frames = [
            {"file": fr.unit.filename, "line": _line(fr), "function": fr.unit.name, "locals": _locals(fr, machine)}
            for fr in task.stack
            if fr.program_key == "main"
        ]
        waiting: Any = None
        if task.waiting is not None and task.waiting in machine.pending:
            req = machine.pending[task.waiting]
            waiting = {"action": req.name, "args": [_short(repr(a)) for a in req.args]}
            extra = waits_by_request.get(req.id)
            if extra:
                waiting.update({k: v for k, v in extra.items() if k in ("due", "channel", "child")})
            waiting["description"] = describe_wait(extra or _wait_of(req), time.time())
        elif task.awaiting:
            waiting = {"action": "wait", "tasks": list(task.awaiting), "mode": task.await_mode}
        tasks.append({"task": task.id, "status": task.status, "stack": frames, "waiting_for": waiting,
                      "result": _short(repr(task.result)) if task.status == "done" else None})
    globals_ = {k: _short(repr(v)) for k, v in machine.user_globals.items()
                if k != "__builtins__" and not callable(v) and type(v).__name__ != "module"}
    return {"tasks": tasks, "globals": globals_}


def _wait_of(req: Any) -> dict[str, Any]:
    """What the runtime records for a wait, as far as the request alone tells (at a past event)."""
    args, kw = req.args, req.kwargs
    if req.name == "receive":
        return {"kind": "receive", "channel": args[0] if args else kw.get("channel", "inbox")}
    if req.name == "call":
        return {"kind": "call", "name": args[0] if args else ""}
    if req.name == "http":
        return {"kind": "http", "what": f"http.request({' '.join(str(a) for a in args[:2])})"}
    if req.name == "child_result":
        return {"kind": "child_result", "child": args[0] if args else ""}
    return {"kind": req.name, "what": req.name}


def format_description(program_id: str, seq: int, desc: dict[str, Any]) -> str:
    lines = [f"program {program_id} at event {seq}"]
    for t in desc["tasks"]:
        lines.append(f"task {t['task']} ({t['status']})")
        for fr in t["stack"]:
            lines.append(f'  File "{fr["file"]}", line {fr["line"]}, in {fr["function"]}')
            for name, value in fr["locals"].items():
                lines.append(f"      {name} = {value}")
        if t["waiting_for"]:
            w = t["waiting_for"]
            if "description" in w:
                lines.append(f"  waiting for {w['description']}")
            else:
                tasks = ", ".join(map(str, w.get("tasks", [])))
                mode = {"all": "all of them", "one": "its result"}.get(str(w.get("mode")), "the first")
                lines.append(f"  waiting for tasks {tasks} ({mode})")
        if t["result"] is not None:
            lines.append(f"  result: {t['result']}")
    if desc["globals"]:
        lines.append("globals:")
        for name, value in desc["globals"].items():
            lines.append(f"  {name} = {value}")
    return "\n".join(lines)
