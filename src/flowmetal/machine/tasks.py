"""Concurrency inside one program: tasks, waiting on tasks, and deadlines.

`spawn(fn, ...)` starts a task: another stack of frames in the same machine,
so its state is part of the program's snapshot like everything else. Tasks
run one at a time, each until it waits (deterministic: in task-number order),
so a program with tasks replays exactly. `wait`, `wait_any` and
`task.result()` block a task on others; with a timeout they also ask the host
for a timer, which loses the race harmlessly if the tasks finish first (the
request simply disappears from the pending list).

`with timeout(s):` asks the host for an absolute deadline once (a recorded
effect, so replays agree), and every effect requested inside carries the
innermost deadline; the host answers a wait that outlives it with `Timeout`.

`task.cancel()` raises `Cancelled` in the task at its current wait: its pending
request is withdrawn (it disappears from the pending list, and the host abandons
whatever call or HTTP request it stood for), so a cancellation is carried out
entirely by the machine and replays like any other step of the program.
`wait_any(..., cancel_rest=True)` cancels the tasks that did not finish first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flowmetal.machine.objects import Task

if TYPE_CHECKING:
    from flowmetal.machine.machine import Machine

BLOCKED = object()  # an op suspended the task
PUSHED = object()  # an op pushed a frame


class Timeout(Exception):
    """A wait did not finish before its timeout or deadline."""


class Cancelled(Exception):
    """The program was cancelled; raised at its current wait so `finally` blocks run."""


Timeout.__module__ = "flowmetal"
Cancelled.__module__ = "flowmetal"


class MachineOp:
    """A built-in the machine itself carries out (it may block the calling task)."""

    __slots__ = ("_bound", "_fn", "_name")

    def __init__(self, name: str, fn: Callable[..., Any], bound: Any = None) -> None:
        self._name = name
        self._fn = fn
        self._bound = bound

    def __getattr__(self, attr: str) -> Any:  # `__name__`, `__qualname__`: not class attributes
        if attr in ("__name__", "__qualname__"):
            return self._name
        raise AttributeError(f"'builtin_function_or_method' object has no attribute '{attr}'")

    def __repr__(self) -> str:
        return f"<built-in function {self._name}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"{self._name}() cannot wait inside a callback of a built-in function; "
                           "call it from Flowmetal code")


MachineOp.__name__ = "builtin_function_or_method"


class TaskHandle:
    """What `spawn` returns: `handle.result(timeout=None)` waits for the task's value."""

    __slots__ = ("_task_id",)

    def __init__(self, task_id: int) -> None:
        self._task_id = task_id

    @property
    def result(self) -> MachineOp:
        return MachineOp("result", _op_result, self)

    @property
    def cancel(self) -> MachineOp:
        return MachineOp("cancel", _op_cancel, self)

    def __repr__(self) -> str:
        return f"<task {self._task_id}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TaskHandle) and other._task_id == self._task_id

    def __hash__(self) -> int:
        return hash(("task", self._task_id))


TaskHandle.__name__ = "Task"


class TimeoutScope:
    """The value of `timeout(seconds)`: a context manager setting a deadline."""

    __slots__ = ("_seconds",)

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds

    def __repr__(self) -> str:
        return f"timeout({self._seconds!r})"


TimeoutScope.__name__ = "timeout"


# -- ops -------------------------------------------------------------------------

def op_spawn(m: Machine, task: Task, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if not args:
        raise TypeError("spawn() missing 1 required positional argument: 'fn'")
    fn, rest = args[0], args[1:]
    if not callable(fn):
        raise TypeError(f"spawn() argument 'fn' must be callable, not {type(fn).__name__}")
    child = m.new_task()
    child.start_call = (fn, tuple(rest), dict(kwargs))
    child.phase = "body"
    return TaskHandle(child.id)


def _handles(args: tuple[Any, ...], name: str) -> list[int]:
    ids = []
    for a in args:
        if not isinstance(a, TaskHandle):
            raise TypeError(f"{name}() arguments must be tasks made by spawn(), not {type(a).__name__}")
        ids.append(a._task_id)
    return ids


def _outcome(m: Machine, task_id: int) -> Any:
    t = m.tasks[task_id]
    if t.status == "failed":
        assert t.error is not None
        raise t.error
    return t.result


def _block_on(m: Machine, task: Task, ids: list[int], mode: str, timeout: Any) -> Any:
    task.awaiting = ids
    task.await_mode = mode
    if timeout is not None:
        req = m.request(task, "timer", (float(timeout),), {})
        task.timer_request = req
    return BLOCKED


def op_wait(m: Machine, task: Task, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    timeout = _timeout_kw(kwargs, "wait")
    ids = _handles(args, "wait")
    if all(m.tasks[i].status in ("done", "failed") for i in ids):
        return [_outcome(m, i) for i in ids]
    return _block_on(m, task, ids, "all", timeout)


def op_wait_any(m: Machine, task: Task, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    cancel_rest = kwargs.pop("cancel_rest", False)
    if not isinstance(cancel_rest, bool):
        raise TypeError(f"wait_any(): cancel_rest must be True or False, not {type(cancel_rest).__name__}")
    timeout = _timeout_kw(kwargs, "wait_any")
    ids = _handles(args, "wait_any")
    if not ids:
        raise ValueError("wait_any() needs at least one task")
    for i in ids:
        if m.tasks[i].status in ("done", "failed"):
            if cancel_rest:
                _cancel_others(m, ids, i)
            return TaskHandle(i)
    return _block_on(m, task, ids, "any_cancel" if cancel_rest else "any", timeout)


def _cancel_others(m: Machine, ids: list[int], winner: int) -> None:
    for i in ids:
        if i != winner:
            cancel_task(m, i, None)


def _op_cancel(m: Machine, task: Task, args: tuple[Any, ...], kwargs: dict[str, Any], handle: TaskHandle) -> Any:
    if args or kwargs:
        raise TypeError("cancel() takes no arguments")
    return cancel_task(m, handle._task_id, task)


def cancel_task(m: Machine, task_id: int, caller: Task | None) -> bool:
    """Raise `Cancelled` in a task at its current wait; False if it had already finished. A task
    that never ran ends cancelled without running; a task cancelling itself gets `Cancelled`
    right there, at the call."""
    t = m.tasks[task_id]
    if t.status in ("done", "failed"):
        return False
    error = Cancelled("the task was cancelled")
    if t is caller:
        raise error
    if t.start_call is not None:
        t.start_call = None
        m._end_task(t, "failed", None, error)
        return True
    if t.waiting is not None and t.waiting in m.pending:
        m.reject(t.waiting, error)  # withdraws the request (and a wait's racing timer)
        return True
    t.awaiting, t.await_mode, t.timer_request = None, None, None
    t.status, t.rv = "runnable", None
    t.stack[-1].throw = error
    return True


def _op_result(m: Machine, task: Task, args: tuple[Any, ...], kwargs: dict[str, Any], handle: TaskHandle) -> Any:
    timeout = _timeout_kw(kwargs, "result")
    if args:
        timeout = args[0]
    if m.tasks[handle._task_id].status in ("done", "failed"):
        return _outcome(m, handle._task_id)
    return _block_on(m, task, [handle._task_id], "one", timeout)


def _timeout_kw(kwargs: dict[str, Any], name: str) -> Any:
    extra = set(kwargs) - {"timeout"}
    if extra:
        raise TypeError(f"{name}() got an unexpected keyword argument '{sorted(extra)[0]}'")
    return kwargs.get("timeout")


def op_timeout(m: Machine, task: Task, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    seconds = args[0] if args else kwargs.get("seconds")
    if not isinstance(seconds, int | float) or isinstance(seconds, bool):
        raise TypeError("timeout() takes a number of seconds")
    return TimeoutScope(float(seconds))


def op_enter(m: Machine, task: Task, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    (manager,) = args
    if isinstance(manager, TimeoutScope):
        req = m.request(task, "deadline", (manager._seconds,), {})
        task.entering = req
        return BLOCKED
    enter = getattr(type(manager), "__enter__", None)
    if enter is None:
        raise TypeError(f"'{type(manager).__name__}' object does not support the context manager protocol")
    return enter(manager)


def op_exit(m: Machine, task: Task, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    manager, exc = args
    if isinstance(manager, TimeoutScope):
        if task.deadlines:
            task.deadlines.pop()
        return False
    exit_ = type(manager).__exit__
    if exc is None:
        return exit_(manager, None, None, None)
    return exit_(manager, type(exc), exc, exc.__traceback__)


def task_finished(m: Machine, finished: Task) -> None:
    """Wake the tasks waiting for `finished`."""
    for t in m.tasks.values():
        if t.status != "blocked" or not t.awaiting or finished.id not in t.awaiting:
            continue
        mode = t.await_mode
        if mode in ("any", "any_cancel"):
            value: Any = TaskHandle(finished.id)
        elif all(m.tasks[i].status in ("done", "failed") for i in t.awaiting):
            value = None
        else:
            continue
        ids = t.awaiting
        t.awaiting, t.await_mode = None, None
        if t.timer_request is not None:
            m.pending.pop(t.timer_request, None)
            t.timer_request = None
        t.status = "runnable"
        if mode == "any_cancel":
            _cancel_others(m, ids, finished.id)
        try:
            if mode == "all":
                value = [_outcome(m, i) for i in ids]
            elif mode == "one":
                value = _outcome(m, ids[0])
        except Exception as e:
            t.stack[-1].throw = e
            value = None
        t.rv = value


def timer_fired(m: Machine, t: Task) -> None:
    """A wait's timeout passed before its tasks finished."""
    t.awaiting, t.await_mode, t.timer_request = None, None, None
    t.stack[-1].throw = Timeout("timed out waiting for tasks")


def deadline_known(t: Task, deadline: float) -> None:
    t.deadlines.append(float(deadline))
    t.entering = None


OPS: dict[str, Callable[..., Any]] = {
    "spawn": op_spawn,
    "wait": op_wait,
    "wait_any": op_wait_any,
    "timeout": op_timeout,
}


def make_ops() -> dict[str, MachineOp]:
    return {name: MachineOp(name, fn) for name, fn in OPS.items()}
