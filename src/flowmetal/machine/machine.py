"""The machine: runs a compiled program until it completes, fails, or waits.

Resumable units are CPython functions over an explicit `Frame` (see
`lang/lower.py`); the machine keeps each task's frames in a list — never on
the host's call stack — and acts on what a frame returns:

    (0, value)   pop the frame, hand the value to the caller
    (1, f, a, k) call f: push a frame for a resumable function, call a plain
                 (CPython) one directly, or, for an effect, stop and return the
                 request to the host; `resolve()` later delivers its result
    (2, value)   a generator yielded
    (3, gen)     advance a resumable generator (a `for` loop)
    (6, gen, v, e)  `yield from`: resume a sub-generator, sending v or throwing e

Plain functions run natively inside those steps. Because no CPython frame is
alive while a program waits, the whole state is the frames, the globals and
the pending requests: `snapshot()` writes exactly that.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from flowmetal.errors import MachineError
from flowmetal.lang.lower import UnitInfo
from flowmetal.lang.names import MAIN_NAME
from flowmetal.lang.program import Program
from flowmetal.machine import kinds as _kinds  # noqa: F401  (registers the kinds of values)
from flowmetal.machine import prelude
from flowmetal.machine import tasks as task_ops
from flowmetal.machine.classes import FlowObject, redirect_instance_call
from flowmetal.machine.limits import Limits, make_ticker, set_active
from flowmetal.machine.objects import (
    CALL,
    CALL_REDIRECTS,
    CLOSE,
    CLOSE_RERAISE,
    DELEGATE,
    END,
    LOOP,
    STEPPED,
    EffectFunction,
    EffectRequest,
    FuelExhausted,
    Function,
    Generator,
    GeneratorMethod,
    MachineAbort,
    MemoryLimitExceeded,
    OutputLimitExceeded,
    Returned,
    Stepped,
    Suspension,
    Task,
)
from flowmetal.machine.objects import Frame as Frame
from flowmetal.machine.runtime_builtins import make_helpers, make_program_builtins
from flowmetal.machine.stdlib import context as std_context
from flowmetal.machine.stdlib.context import NoReads, Reads
from flowmetal.machine.tasks import BLOCKED, MachineOp
from flowmetal.machine.tracebacks import (
    add_trace,
    as_cpython_recursion,
    error_line,
    format_exception,
)
from flowmetal.machine.values import Module

_PUSHED = task_ops.PUSHED
_BLOCKED = object()
_ENDED = object()
INT_MAX_STR_DIGITS = 4300  # CPython's default; fixed for programs (see docs/language.md)
_DIRECT_LIMIT = 150  # resumable calls nested on the host stack before the machine takes over
# The machine's frames between `run()` and a plain `main()` it calls, less CPython's `<module>`
# frame: with the host's limit this far above `run()`, a plain recursion fails at the depth
# CPython's does in a script (so "[Previous line repeated N more times]" shows CPython's N).
_HOST_FRAMES_TO_MAIN = 8
_VIA_MACHINE = Suspension([], None)
_BLOCKING_OPS = frozenset({"wait", "wait_any", "result", "enter"})
NO_READS = NoReads()


@dataclass
class Completed:
    value: Any


@dataclass
class Failed:
    error: BaseException
    error_line: str
    traceback: str


@dataclass
class Blocked:
    requests: list[EffectRequest]


Outcome = Completed | Failed | Blocked


class Machine:
    def __init__(
        self,
        program: Program,
        args: Mapping[str, Any] | None = None,
        *,
        limits: Limits | None = None,
        host_module: Mapping[str, Any] | None = None,
        codec_extensions: Callable[[Any], None] | None = None,
        _empty: bool = False,
    ) -> None:
        self.program = program
        self.args = dict(args or {})
        self.limits = limits or Limits()
        self.codec_extensions = codec_extensions  # lets the host snapshot its own value types
        self.host_module_members = dict(host_module or {})
        self.host_module = Module("flowmetal", self.host_module_members)
        self.output: list[str] = []
        self.output_size = 0  # characters in `output` (the limit is Limits.max_output)
        self.tasks: dict[int, Task] = {}
        self.pending: dict[int, EffectRequest] = {}
        # the program's own state in the standard modules (random's generator, ...): see stdlib/context.py
        self.module_state: dict[str, Any] = {}
        self.reads: Reads = NO_READS  # the host answers the reads that do not wait (the clock, a seed)
        self.next_request = 1
        self.next_task = 1
        self.outcome: Outcome | None = None
        self.direct_depth = 0  # resumable calls running directly on the host stack
        self.sent: Any = None  # what a generator pushed by `send()` receives as its first `_fm_rv`
        # resumable calls (and generator steps) nested on the host stack before the machine takes
        # over: each takes host frames, which the host's limit counts with the program's
        self.direct_cap = min(_DIRECT_LIMIT, self.limits.depth // 4)
        self.stack_depth = 0  # frames of the task running now
        self.aborted: BaseException | None = None
        self.cancelling = False  # the run after cancel() (never across a snapshot: runs are whole)
        self.ticks = make_ticker(self)
        self.programs: dict[str, Program] = {"main": program, "prelude": prelude.program()}
        self.globals: dict[str, dict[str, Any]] = {}
        self.unit_fns: dict[tuple[str, int], Any] = {}
        self.helper_cells: dict[str, dict[str, types.CellType]] = {}
        for key in self.programs:
            # `__name__`: CPython's class statement reads it (for `__module__`); a program runs as `__main__`
            g: dict[str, Any] = {"__builtins__": make_program_builtins(self, key), "__name__": "__main__"}
            self.globals[key] = g
            self.helper_cells[key] = {n: types.CellType(v) for n, v in make_helpers(self, key).items()}
        self.globals["main"]["__name__"] = MAIN_NAME
        self.prelude_fns = self._load_prelude()
        self.overrides = prelude.overrides(self.prelude_fns)
        if not _empty:
            main_task = self.new_task()
            main_task.stack.append(self._module_frame("main"))

    # -- setup -------------------------------------------------------------------
    @property
    def user_globals(self) -> dict[str, Any]:
        return self.globals["main"]

    def unit(self, program_key: str, uid: int) -> UnitInfo:
        return self.programs[program_key].units[uid]

    def unit_fn(self, program_key: str, uid: int) -> Any:
        fn = self.unit_fns.get((program_key, uid))
        if fn is None:
            info = self.unit(program_key, uid)
            cells = self.helper_cells[program_key]
            closure = tuple(cells[n] for n in info.code.co_freevars)  # the helpers it uses
            fn = types.FunctionType(info.code, self.globals[program_key], info.name, None, closure)
            if info.kind == "generator":
                fn = _generator_stepper(fn)
            self.unit_fns[(program_key, uid)] = fn
        return fn

    def _module_frame(self, key: str) -> Frame:
        program = self.programs[key]
        return Frame(key, program.module_unit, self.unit_fn(key, 0), {})

    def _load_prelude(self) -> dict[str, Any]:
        self.call_frame_nested(self._module_frame("prelude"))
        return self.globals["prelude"]

    def new_task(self) -> Task:
        task = Task(self.next_task)
        self.next_task += 1
        self.tasks[task.id] = task
        return task

    def new_frame(self, key: str, unit: UnitInfo, slots: dict[str, Any], closure: tuple[Any, ...]) -> Frame:
        for name in unit.cellvars:
            slots[f"_fm_cell_{name}"] = types.CellType(slots.pop(name)) if name in slots else types.CellType()
        for name, cell in zip(unit.frees, closure):
            slots[f"_fm_cell_{name}"] = cell
        return Frame(key, unit, self.unit_fn(key, unit.uid), slots)

    # -- values made by generated code -------------------------------------------
    def make_function(self, key: str, uid: int, defaults: tuple[Any, ...], kwdefaults: dict[str, Any],
                      closure: tuple[Any, ...]) -> Function:
        info = self.unit(key, uid)
        binder = types.FunctionType(info.binder, self.globals[key], info.name, defaults or None)
        if kwdefaults:
            binder.__kwdefaults__ = kwdefaults
        return Function(self, key, info, binder, closure, self.unit_fn(key, uid))

    def make_generator(self, key: str, uid: int, iterator: Any, closure: tuple[Any, ...]) -> Generator:
        info = self.unit(key, uid)
        frame = self.new_frame(key, info, {"_fm_arg0": iterator}, closure)
        gen = Generator(self, frame, info.qualname)
        frame.gen = gen
        return gen

    # -- running -------------------------------------------------------------------
    def run(self) -> Outcome:
        """Run every runnable task until the program completes, fails or waits."""
        if self.outcome is not None and not isinstance(self.outcome, Blocked):
            return self.outcome
        old_limit = sys.getrecursionlimit()
        sys.setrecursionlimit(_host_depth() + self.limits.depth + _HOST_FRAMES_TO_MAIN)
        # Flowmetal's own digit limit for int <-> str, whatever the host's setting, so a
        # program converts (or fails to convert) the same numbers everywhere
        old_digits = sys.get_int_max_str_digits()
        sys.set_int_max_str_digits(INT_MAX_STR_DIGITS)
        set_active(self.limits)
        running = std_context.enter(self)
        try:
            self.ticks.start()
            main_task = self.tasks[1]
            if len(self.tasks) == 1 and main_task.status == "runnable":
                self._run_task(main_task)  # the common case: no spawned tasks
            if len(self.tasks) > 1:
                while True:
                    runnable = [t for t in self.tasks.values() if t.status == "runnable"]
                    if not runnable or main_task.status in ("done", "failed"):
                        break
                    if self.cancelling and runnable[0] is main_task:
                        # the tasks' cleanup runs before main's: main ending ends the program
                        runnable = runnable[1:] + runnable[:1]
                    for task in runnable:
                        self._run_task(task)
                        if main_task.status in ("done", "failed"):
                            break
        except MachineAbort as abort:
            self.aborted = abort
        finally:
            sys.setrecursionlimit(old_limit)
            self.cancelling = False
            sys.set_int_max_str_digits(old_digits)
            std_context.leave(running)
        if self.aborted is not None:
            self.outcome = self._failed(self.aborted)
            return self.outcome
        main = self.tasks[1]
        if main.status == "done":
            self.outcome = Completed(main.result)
        elif main.status == "failed":
            assert main.error is not None
            self.outcome = self._failed(main.error)
        else:
            self.outcome = Blocked(list(self.pending.values()))
        return self.outcome

    def _failed(self, error: BaseException) -> Failed:
        if type(error) is MemoryError:  # the host refused an allocation (never the program's own)
            error = MemoryLimitExceeded("MemoryLimitExceeded: the program ran out of memory")
        if isinstance(error, FuelExhausted | MemoryLimitExceeded):
            line = str(error)
            return Failed(error, line, line)
        if type(error) is RecursionError:  # raised in main() the machine called itself
            as_cpython_recursion(error)
        return Failed(error, error_line(error), format_exception(error, self.programs))

    def _run_task(self, task: Task) -> None:
        rv = task.rv
        task.rv = None
        if task.start_call is not None:
            fn, args, kwargs = task.start_call
            task.start_call = None
            try:
                rv = self._dispatch(task, fn, args, kwargs)
            except BaseException as e:
                if isinstance(e, MachineAbort | KeyboardInterrupt | SystemExit):
                    raise
                self._end_task(task, "failed", None, e)
                return
            if rv is _BLOCKED:
                task.status = "blocked"
                return
            if rv is _PUSHED:
                rv, self.sent = self.sent, None
        while True:
            result = self._drive(task, rv, nested=False)
            if result is _BLOCKED or result is _ENDED:
                return
            if not self._task_finished(task, result):
                return
            rv = task.rv
            task.rv = None

    def _drive(self, task: Task, rv: Any, nested: bool, first: tuple[Any, ...] | None = None) -> Any:
        """Run the task's frames until its stack empties (returns the last value), it waits
        (`_BLOCKED`) or it fails (`_ENDED`). A nested run (native code calling resumable
        code, on the host stack) cannot wait: it raises instead, and returns a generator's
        first yielded value."""
        stack = task.stack
        while stack:
            fr = stack[-1]
            self.stack_depth = len(stack)
            try:
                if first is None:
                    out = fr.fn(fr, rv)
                else:  # what the top frame asked for when it ran directly (`_finish_nested`)
                    out, first = first, None
            except MachineAbort:
                raise
            except BaseException as e:  # the program's own exception leaves this frame
                if isinstance(e, KeyboardInterrupt | SystemExit):
                    raise
                stack.pop()
                e = self._leave_frame(fr, e)
                gen = fr.gen
                if gen is not None and gen._mode == STEPPED and stack:
                    rv = Stepped(None, e)  # for the generator parked in `yield from` it, to raise
                    continue
                if gen is not None and isinstance(e, GeneratorExit) and (
                        gen._mode == CLOSE or gen._mode == CLOSE_RERAISE):
                    if gen._mode == CLOSE:  # close() ends quietly when the body lets GeneratorExit out
                        rv = None
                        if not stack:
                            return rv
                        continue
                if not stack:
                    if nested:
                        raise e
                    self._end_task(task, "failed", None, e)
                    return _ENDED
                stack[-1].throw = e
                rv = None
                continue
            kind = out[0]
            if kind == 5:  # frames that ran directly now wait: adopt them
                susp = out[1]
                stack.extend(susp.frames)
                fr = stack[-1]
                out = susp.out
                kind = out[0]
                if len(stack) > self.limits.depth:
                    fr.throw, rv = RecursionError("maximum recursion depth exceeded"), None
                    continue
            if kind == 0:
                stack.pop()
                rv = out[1]
                if fr.gen is not None:
                    rv = self._gen_finished(fr.gen, rv)
                    if type(rv) is _Raise:
                        if not stack:
                            raise rv.error
                        stack[-1].throw, rv = rv.error, None
            elif kind == 1:
                if nested and self._refuse_wait(fr, out[1]):
                    rv = None
                    continue
                rv = self._dispatch(task, out[1], out[2], out[3])
                if rv is _BLOCKED:
                    task.status = "blocked"
                    return _BLOCKED
                if rv is _PUSHED:
                    rv, self.sent = self.sent, None
            elif kind == 2:
                stack.pop()
                gen = fr.gen
                assert gen is not None
                gen._running = False
                rv = out[1]
                if gen._mode == STEPPED:
                    rv = Stepped(rv)
                elif gen._mode == CLOSE or gen._mode == CLOSE_RERAISE:
                    err = RuntimeError("generator ignored GeneratorExit")
                    if not stack:
                        raise err
                    stack[-1].throw, rv = err, None
                    continue
                if nested and not stack:
                    return rv
            elif kind == 3:
                rv = self._advance(task, out[1])
            else:  # 6: `yield from` resumes its sub-generator
                exc = out[3]
                try:
                    rv = self._gen_enter(task, out[1], out[2], exc,
                                         CLOSE_RERAISE if isinstance(exc, GeneratorExit) else DELEGATE)
                except BaseException as e:
                    if isinstance(e, MachineAbort | KeyboardInterrupt | SystemExit):
                        raise
                    fr.throw, rv = e, None
                    continue
                if rv is _PUSHED:
                    rv, self.sent = self.sent, None
        return rv

    @staticmethod
    def _gen_finished(gen: Generator, value: Any) -> Any:
        """What the caller of a generator whose body just returned `value` receives."""
        gen._finished = True
        gen._running = False
        gen._frame.slots = {}  # its variables are gone, as in CPython
        gen._frame.live = None
        mode = gen._mode
        if mode == LOOP:
            return END
        if mode == DELEGATE:
            return Returned(value)
        if mode == STEPPED:
            return Stepped(Returned(value))
        if mode == CLOSE:
            return None
        if mode == CLOSE_RERAISE:
            return _Raise(GeneratorExit())
        if type(mode) is list:
            return mode[0]  # next(gen, default)
        return _Raise(StopIteration(value) if value is not None else StopIteration())

    @staticmethod
    def _refuse_wait(fr: Frame, callee: Any) -> bool:
        what = callee._effect if type(callee) is EffectFunction else (
            callee._name if type(callee) is MachineOp and callee._name in _BLOCKING_OPS else None)
        if what is None:
            return False
        fr.throw = RuntimeError(
            f"{what}() cannot wait inside a callback of a built-in function or "
            "a generator consumed by one; call it from Flowmetal code"
        )
        return True

    def _task_finished(self, task: Task, rv: Any) -> bool:
        """The task's stack emptied; returns True when it has more to run (main)."""
        if task.phase == "module" and task.id == 1:
            task.phase = "main"
            main = self.user_globals.get("main") if self.program.defines_main else None
            if callable(main):
                try:
                    result = self._dispatch(task, main, (), dict(self.args))
                except BaseException as e:
                    if isinstance(e, MachineAbort | KeyboardInterrupt | SystemExit):
                        raise
                    task.status, task.error = "failed", e
                    return False
                if result is _BLOCKED:
                    task.status = "blocked"
                    return False
                if result is not _PUSHED:
                    self._end_task(task, "done", result, None)
                    return False
                task.rv = None
                return True
            rv = None
        self._end_task(task, "done", rv, None)
        return False

    def _end_task(self, task: Task, status: str, result: Any, error: BaseException | None) -> None:
        task.status, task.result, task.error = status, result, error
        task_ops.task_finished(self, task)

    def _leave_frame(self, fr: Frame, e: BaseException) -> BaseException:
        if fr.gen is not None:
            fr.gen._finished = True
            fr.gen._running = False
            if isinstance(e, StopIteration):
                err = RuntimeError("generator raised StopIteration")
                err.__cause__ = e
                e = err
        add_trace(e, fr, self.programs)
        return e

    def _advance(self, task: Task, gen: Any) -> Any:
        if gen._finished:
            return END
        if gen._running:
            task.stack[-1].throw = ValueError("generator already executing")
            return None
        if len(task.stack) >= self.limits.depth:
            task.stack[-1].throw = RecursionError("maximum recursion depth exceeded")
            return None
        gen._running = True
        gen._mode = LOOP
        task.stack.append(gen._frame)
        return None

    def _gen_enter(self, task: Task | None, gen: Generator, value: Any, exc: BaseException | None,
                   mode: Any) -> Any:
        """Resume `gen` with `value` sent (or `exc` thrown) in: push its frame on `task` (None:
        just prepare it) and return _PUSHED (its first `_fm_rv` is `self.sent`), or the result
        when the body does not run (a finished or unstarted generator); raises what the caller
        gets instead."""
        if gen._running:
            raise ValueError("generator already executing")
        fr = gen._frame
        if gen._finished:
            if exc is not None:
                if isinstance(exc, GeneratorExit) and mode == CLOSE:
                    return None
                raise exc
            gen._mode = mode
            result = self._gen_finished(gen, None)
            if type(result) is _Raise:
                raise result.error
            return result
        if fr.pc == 0:  # not started: nothing in the body can see a value or an exception yet
            if exc is not None:
                gen._finished = True
                if isinstance(exc, GeneratorExit) and mode == CLOSE:
                    return None
                raise exc
            if value is not None:
                raise TypeError("can't send non-None value to a just-started generator")
        gen._running = True
        gen._mode = mode
        fr.throw = exc
        if task is not None:
            if len(task.stack) >= self.limits.depth:
                gen._running = False
                raise RecursionError("maximum recursion depth exceeded")
            task.stack.append(fr)
        self.sent = value
        return _PUSHED

    def _gen_method(self, task: Task | None, method: GeneratorMethod, args: tuple[Any, ...],
                    kwargs: dict[str, Any]) -> Any:
        """`gen.send(v)`, `gen.throw(e)`, `gen.close()` through the machine."""
        return self._gen_enter(task, method._gen, *_method_call(method, args, kwargs))

    def gen_direct(self, gen: Generator, value: Any = None, exc: BaseException | None = None,
                   mode: Any = LOOP) -> Any:
        """Resume `gen` right here, on the host stack (fast: neither the caller's frame nor the
        generator's goes through the machine), until it yields, returns or raises. Returns what
        the caller receives (see `_gen_finished`) or raises what it gets; or, if the body has to
        wait, a `Suspension` holding the generator's frame (and those it called) for the machine
        to adopt, above the caller, which gets the value when the generator yields there."""
        frame = gen._frame
        sub = gen._yf
        if sub is not None and exc is None and not gen._running:
            # parked in `yield from` another generator: step that one (which may itself be parked)
            # and leave this one parked, unless it has to see what came out
            gen._running = True
            try:
                got = self.gen_direct(sub, value, None, STEPPED)
            finally:
                gen._running = False
            if type(got) is Stepped:
                if got.error is None and type(got.value) is not Returned:
                    return got if mode == STEPPED else got.value
                value = got  # returned or raised: this one goes on with it
            elif got.frames:
                # the sub-generator's body needs the machine: it adopts this generator's frame
                # under the sub-generator's, to receive the `Stepped` outcome when it comes
                gen._running, gen._mode, frame.throw = True, mode, None
                got.frames.insert(0, frame)
                return got
            # else (too deep to run here: it did not start) the long way, below
        if (gen._running or gen._finished or self.direct_depth >= self.direct_cap
                or (frame.pc == 0 and (value is not None or exc is not None))):
            if self.direct_depth >= self.direct_cap:
                return _VIA_MACHINE
            got = self._gen_enter(None, gen, value, exc, mode)  # the unusual cases, with their errors
            if got is not _PUSHED:
                return got
            rv, self.sent = self.sent, None
        else:
            if self.stack_depth + self.direct_depth >= self.limits.depth:
                raise RecursionError("maximum recursion depth exceeded")
            gen._running = True
            gen._mode = mode
            frame.throw = exc
            rv = value
        self.direct_depth += 1
        try:
            while True:
                try:
                    live = frame.live
                    if live is not None:  # between two yields: its CPython generator goes on
                        out = live.send(rv)
                    else:
                        out = frame.fn(frame, rv)
                except StopIteration as stop:  # the state machine returned (it is done with `live`)
                    frame.live = None
                    out = stop.value
                except (MachineAbort, KeyboardInterrupt, SystemExit):
                    raise
                except BaseException as e:
                    frame.live = None
                    err = self._leave_frame(frame, e)
                    if mode == CLOSE and isinstance(err, GeneratorExit):
                        return None
                    if mode == STEPPED:
                        return Stepped(None, err)
                    raise err  # noqa: B904  (its cause, if any, is already set)
                kind = out[0]
                if kind == 2:
                    gen._running = False
                    if mode in (CLOSE, CLOSE_RERAISE, STEPPED):
                        if mode == STEPPED:
                            return Stepped(out[1])
                        raise RuntimeError("generator ignored GeneratorExit")
                    return out[1]
                if kind == 0:
                    result = self._gen_finished(gen, out[1])
                    if type(result) is _Raise:
                        raise result.error
                    return result
                if kind == 5:
                    out[1].frames.insert(0, frame)
                    return out[1]
                if kind == 1 and self._host_callable(out[1], out[2], out[3]):
                    try:
                        rv = out[1](*out[2], **(out[3] or {}))
                    except (MachineAbort, KeyboardInterrupt, SystemExit):
                        raise
                    except BaseException as e:
                        frame.throw, rv = e, None
                    continue
                return Suspension([frame], out)
        finally:
            self.direct_depth -= 1

    def gen_nested(self, gen: Generator, value: Any, exc: BaseException | None, mode: Any) -> Any:
        """Resume a generator from native code (a plain function, a CPython built-in): it runs on
        the host stack and may not wait."""
        got = self.gen_direct(gen, value, exc, mode)
        if type(got) is not Suspension:
            return got
        return self.gen_nested_rest(gen, got, mode, value, exc)

    def gen_nested_rest(self, gen: Generator, got: Suspension, mode: Any, value: Any = None,
                        exc: BaseException | None = None) -> Any:
        """`gen_nested` when the generator could not simply run directly."""
        if got.frames:
            return self._finish_nested(got)
        got = self._gen_enter(None, gen, value, exc, mode)  # too deep to run directly
        if got is not _PUSHED:
            return got
        value, self.sent = self.sent, None
        return self._run_nested(gen._frame, value)

    def gen_method_nested(self, method: GeneratorMethod, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return self.gen_nested(method._gen, *_method_call(method, args, kwargs))

    def _finish_nested(self, susp: Suspension) -> Any:
        """Go on, on the host stack, with frames that ran directly and now need the machine (to
        call something that is not plain, or to wait: which native code cannot do)."""
        outer = self.stack_depth
        try:
            return self._drive(Task(0, list(susp.frames)), None, nested=True, first=susp.out)
        finally:
            self.stack_depth = outer

    def _dispatch(self, task: Task, callee: Any, args: tuple[Any, ...], kwargs: dict[str, Any] | None) -> Any:
        """Call something that might wait, on behalf of the frame on top of `task`."""
        kwargs = kwargs or {}
        try:
            kind = type(callee)
            if kind is Function:
                return self._push_call(task, callee, args, kwargs)
            if kind is EffectFunction:
                self.request(task, callee._effect, callee._bound + tuple(args), kwargs)
                return _BLOCKED
            if kind is MachineOp:
                if callee._bound is None:
                    result = callee._fn(self, task, args, kwargs)
                else:
                    result = callee._fn(self, task, args, kwargs, callee._bound)
                return _BLOCKED if result is BLOCKED else result
            if kind is GeneratorMethod:
                return self._gen_method(task, callee, args, kwargs)
            if callee is iter and len(args) == 1 and type(args[0]) is Generator and not kwargs:
                return args[0]  # a generator is its own iterator: never materialize it
            if callee is next and args and type(args[0]) is Generator and len(args) <= 2 and not kwargs:
                return self._gen_enter(task, args[0], None, None, [args[1]] if len(args) == 2 else CALL)
            redirect = CALL_REDIRECTS.get(kind)
            if redirect is None and isinstance(callee, FlowObject):
                redirect = redirect_instance_call
            if redirect is not None:
                target = redirect(self, callee, args, kwargs)
                if target is not None:
                    return self._dispatch(task, *target)
            target = self._resumable_equivalent(callee, args, kwargs)
            if target is not None:
                fn, args, kwargs = target
                return self._push_call(task, fn, args, kwargs)
            return callee(*args, **kwargs)
        except (MachineAbort, KeyboardInterrupt, SystemExit):
            raise
        except BaseException as e:
            if not task.stack:
                raise
            task.stack[-1].throw = e
            return None

    def _resumable_equivalent(self, callee: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Built-ins given a generator or a function that may wait run as prelude code."""
        waiting = False
        for a in args:
            if type(a) is Generator or type(a) is Function or type(a) is EffectFunction or (
                    type(a) in CALL_REDIRECTS and CALL_REDIRECTS[type(a)](self, a, (), {}) is not None):
                waiting = True
                break
        else:
            for v in kwargs.values():
                if type(v) is Generator or type(v) is Function or type(v) is EffectFunction or (
                        type(v) in CALL_REDIRECTS and CALL_REDIRECTS[type(v)](self, v, (), {}) is not None):
                    waiting = True
                    break
        if not waiting:
            return None
        try:
            override = self.overrides.get(callee)
        except TypeError:  # unhashable callee
            override = None
        if override is not None:
            return override, args, kwargs
        if getattr(callee, "__name__", None) == "sort" and type(getattr(callee, "__self__", None)) is list:
            return self.prelude_fns["_list_sort"], (callee.__self__,), kwargs
        if any(type(a) is Generator for a in args):
            return self.prelude_fns["_materialize_call"], (callee, args, kwargs), {}
        return None

    def invoke(self, fn: Function, args: tuple[Any, ...], kwargs: dict[str, Any] | None) -> Any:
        """Call a resumable function directly on the host stack (fast: no frame push, no
        saving of the caller) and return its value — or, if it has to wait, a `Suspension`
        holding its frame (and those of the resumable functions it called directly)."""
        if type(fn) is not Function:  # a generator's method, or next(): resume the generator here
            if type(fn) is GeneratorMethod:
                return self.gen_direct(fn._gen, *_method_call(fn, args, kwargs or {}))
            if args and type(args[0]) is Generator and len(args) <= 2 and not kwargs:
                return self.gen_direct(args[0], None, None, [args[1]] if len(args) == 2 else CALL)
            return fn(*args, **(kwargs or {}))
        if self.direct_depth >= self.direct_cap:
            return _VIA_MACHINE
        if self.stack_depth + self.direct_depth >= self.limits.depth:
            raise RecursionError("maximum recursion depth exceeded")
        frame = self._activate(fn, args, kwargs)
        if isinstance(frame, Generator):
            return frame
        self.direct_depth += 1
        try:
            rv: Any = None
            while True:
                out = frame.fn(frame, rv)
                kind = out[0]
                if kind == 0:
                    return out[1]
                if kind == 5:
                    out[1].frames.insert(0, frame)
                    return out[1]
                if kind == 1 and self._host_callable(out[1], out[2], out[3]):
                    try:
                        rv = out[1](*out[2], **(out[3] or {}))
                    except (MachineAbort, KeyboardInterrupt, SystemExit):
                        raise
                    except BaseException as e:
                        frame.throw, rv = e, None
                    continue
                return Suspension([frame], out)
        finally:
            self.direct_depth -= 1

    def _host_callable(self, callee: Any, args: tuple[Any, ...], kwargs: dict[str, Any] | None) -> bool:
        """A call the machine would simply perform on the host (no frame, no wait)."""
        kind = type(callee)
        if kind is Function or kind is EffectFunction or kind is MachineOp or kind is GeneratorMethod:
            return False
        redirect = CALL_REDIRECTS.get(kind)
        if redirect is None and isinstance(callee, FlowObject):
            redirect = redirect_instance_call
        if redirect is not None and redirect(self, callee, args, kwargs or {}) is not None:
            return False
        if callee is iter:
            return not (len(args) == 1 and type(args[0]) is Generator)
        return self._resumable_equivalent(callee, args, kwargs or {}) is None

    def _activate(self, fn: Function, args: tuple[Any, ...], kwargs: dict[str, Any] | None) -> Frame | Generator:
        """Bind a call's arguments: the callee's new frame, or for a generator function the
        generator (which runs only when iterated)."""
        slots = fn._binder(*args, **(kwargs or {}))
        unit = fn._unit
        if unit.cellvars or unit.frees:
            frame = self.new_frame(fn._program_key, unit, slots, fn._closure)
        else:  # the common case, without cells to set up
            frame = Frame(fn._program_key, unit, fn._frame_fn, slots)
        if unit.kind == "generator":
            gen = Generator(self, frame, unit.qualname)
            frame.gen = gen
            return gen
        return frame

    def _push_call(self, task: Task, fn: Function, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        frame = self._activate(fn, args, kwargs)
        if isinstance(frame, Generator):
            return frame
        if len(task.stack) >= self.limits.depth:
            raise RecursionError("maximum recursion depth exceeded")
        task.stack.append(frame)
        return _PUSHED

    def request(self, task: Task, effect: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
        """Ask the host for an effect on behalf of `task` (which then waits for it)."""
        deadline = min(task.deadlines) if task.deadlines else None
        req = EffectRequest(self.next_request, task.id, effect, tuple(args), dict(kwargs), deadline)
        self.next_request += 1
        self.pending[req.id] = req
        task.waiting = req.id
        return req.id

    # -- host interface -------------------------------------------------------------
    def resolve(self, request_id: int, value: Any) -> None:
        task = self._take_request(request_id)
        if task.timer_request == request_id:
            task_ops.timer_fired(self, task)
        elif task.entering == request_id:
            task_ops.deadline_known(task, value)
        else:
            task.rv = value

    def reject(self, request_id: int, error: BaseException) -> None:
        task = self._take_request(request_id)
        task.awaiting, task.await_mode, task.timer_request, task.entering = None, None, None, None
        task.stack[-1].throw = error

    def cancel(self, error: BaseException | None = None) -> None:
        """Raise `Cancelled` (or `error`) at every task's current wait, so `finally` blocks run:
        in the next run the other tasks' first, then main's."""
        self.cancelling = True
        for req_id in sorted(self.pending):
            self.reject(req_id, error or task_ops.Cancelled("the program was cancelled"))
        for task in self.tasks.values():
            if task.status == "blocked" and task.awaiting:
                task.awaiting, task.await_mode = None, None
                task.status = "runnable"
                task.stack[-1].throw = error or task_ops.Cancelled("the program was cancelled")
        self.outcome = None

    def _take_request(self, request_id: int) -> Task:
        req = self.pending.pop(request_id, None)
        if req is None:
            raise MachineError(f"no pending effect request {request_id}")
        task = self.tasks[req.task]
        task.status, task.waiting = "runnable", None
        self.outcome = None
        return task

    def take_output(self) -> str:
        text = "".join(self.output)
        self.output.clear()
        self.output_size = 0
        return text

    def write(self, text: str) -> None:
        self.output_size += len(text)
        cap = self.limits.max_output
        if cap is not None and self.output_size > cap:
            raise OutputLimitExceeded(f"OutputLimitExceeded: the program printed more than {cap} characters "
                                      "in one slice")
        self.output.append(text)

    # -- nested runs (native code calling resumable code) ----------------------------------
    def call_nested(self, fn: Function, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        frame = self._activate(fn, args, kwargs)
        if isinstance(frame, Generator):
            return frame
        return self.call_frame_nested(frame)

    def call_frame_nested(self, frame: Frame) -> Any:
        """Run a frame to its end on the host stack; it may not wait."""
        return self._run_nested(frame, None)

    def _run_nested(self, frame: Frame, rv: Any) -> Any:
        outer = self.stack_depth
        try:
            return self._drive(Task(0, [frame]), rv, nested=True)
        finally:
            self.stack_depth = outer

    # -- snapshots ----------------------------------------------------------------
    @property
    def codec(self) -> Any:
        """This machine's snapshot codec (built on first use, then reused)."""
        codec = self.__dict__.get("_codec")
        if codec is None:
            from flowmetal.machine.snapshot import make_codec

            codec = self._codec = make_codec(self)
        return codec

    def snapshot(self) -> bytes:
        """The machine's whole state as versioned bytes (see `snapshot.py`)."""
        from flowmetal.machine.snapshot import snapshot

        return snapshot(self)

    @classmethod
    def restore(cls, data: bytes, *, host_module: Mapping[str, Any] | None = None,
                limits: Limits | None = None, program: Program | None = None,
                codec_extensions: Callable[[Any], None] | None = None) -> Machine:
        from flowmetal.machine.snapshot import restore

        return restore(data, host_module=dict(host_module or {}), limits=limits, program=program,
                       codec_extensions=codec_extensions)

    # -- limits ------------------------------------------------------------------
    def check_limits(self) -> None:
        """Called by the fuel ticker every quantum of work."""
        self.limits.check(self)


def _generator_stepper(machine_fn: Any) -> Any:
    """A generator unit's state machine is a CPython generator function: run as `fn(frame, rv)`
    like every unit's, it is kept running across the generator's `yield`s (no variables saved
    or reloaded), and ends (its variables saved in the frame) whenever it returns anything else
    to the machine: a call that may wait, a loop over a generator through the machine, its end."""

    def step(fr: Frame, rv: Any) -> Any:
        live = fr.live
        try:
            if live is None:
                live = fr.live = machine_fn(fr, rv)
                return live.send(None)
            return live.send(rv)
        except StopIteration as stop:
            fr.live = None
            return stop.value
        except BaseException:
            fr.live = None
            raise

    return step


class _Raise:
    """A generator's end that raises in its caller (StopIteration, GeneratorExit)."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


def _method_call(method: GeneratorMethod, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any, Any]:
    """(value sent, exception thrown, mode) of `gen.send(v)`, `gen.throw(e)` or `gen.close()`, with
    CPython's argument checks."""
    name = method._name
    if kwargs:
        raise TypeError(f"generator.{name}() takes no keyword arguments")
    if name == "send":
        if len(args) != 1:
            raise TypeError(f"generator.send() takes exactly one argument ({len(args)} given)")
        return args[0], None, CALL
    if name == "close":
        if args:
            raise TypeError(f"generator.close() takes no arguments ({len(args)} given)")
        return None, GeneratorExit(), CLOSE
    if not 1 <= len(args) <= 3:
        raise TypeError(f"throw expected at least 1 argument, got {len(args)}" if not args
                        else f"throw expected at most 3 arguments, got {len(args)}")
    return None, _exception_of(*args[:2]), CALL


def _exception_of(typ: Any, value: Any = None) -> BaseException:
    """The exception `gen.throw(typ[, value])` raises in the generator, as CPython builds it."""
    if isinstance(typ, BaseException):
        if value is not None:
            raise TypeError("instance exception may not have a separate value")
        return typ
    if isinstance(typ, type) and issubclass(typ, BaseException):
        if isinstance(value, typ):
            return value
        return typ() if value is None else typ(value)
    raise TypeError(f"exceptions must be classes or instances deriving from BaseException, not "
                    f"{type(typ).__name__}")


def _host_depth() -> int:
    depth = 0
    f = sys._getframe()
    while f is not None:
        depth += 1
        f = f.f_back  # type: ignore[assignment]
    return depth
