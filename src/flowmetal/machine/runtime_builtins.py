"""The builtins dictionary a compiled program runs with: the language's
built-ins (`builtins_table`) plus the `_fm_*` helpers generated code calls."""

from __future__ import annotations

import builtins as host
import types
from typing import TYPE_CHECKING, Any

from flowmetal.lang.names import STD_MODULES
from flowmetal.machine import limits as limits_mod
from flowmetal.machine.builtins_table import make_builtins, safe_format, safe_format_map
from flowmetal.machine.objects import END, Function, Generator, MachineAbort, Suspension
from flowmetal.machine.stdmods import get_module
from flowmetal.machine.tasks import MachineOp, op_enter, op_exit
from flowmetal.machine.values import FmSet

if TYPE_CHECKING:
    from flowmetal.machine.machine import Machine


def _fmt(obj: Any, attr: str) -> Any:
    """`obj.format` / `obj.format_map`, with dunder fields refused."""
    if obj is str:
        return safe_format if attr == "format" else safe_format_map
    if isinstance(obj, str):
        if attr == "format":
            return lambda *a, **k: safe_format(obj, *a, **k)
        return lambda mapping: safe_format_map(obj, mapping)
    return getattr(obj, attr)


def _fmtcall(obj: Any, attr: str, /, *args: Any, **kwargs: Any) -> Any:
    return _fmt(obj, attr)(*args, **kwargs)


def _in_handler(exc: Any, handled: BaseException) -> Any:
    """`raise X` inside an `except` block: chain X to the handled exception, as CPython does."""
    if isinstance(exc, type) and issubclass(exc, BaseException):
        exc = exc()
    if isinstance(exc, BaseException) and exc is not handled and exc.__context__ is None:
        exc.__context__ = handled
    return exc


def _take_throw(frame: Any) -> BaseException:
    exc = frame.throw
    frame.throw = None
    return exc


def make_program_builtins(machine: Machine, program_key: str) -> dict[str, Any]:
    table: dict[str, Any] = dict(make_builtins(lambda *a, **k: _print(machine, *a, **k)))
    if program_key == "prelude":
        from flowmetal.machine.prelude import prelude_builtins

        table.update(prelude_builtins())  # shared (cached) objects: snapshots name them

    def fm_import(module: str, attr: str | None = None) -> Any:
        if module in STD_MODULES:
            mod: Any = get_module(module)
        elif module == "flowmetal":
            mod = machine.host_module
        else:
            raise ImportError(f"No module named '{module}'")
        if attr is None:
            return mod
        try:
            return getattr(mod, attr)
        except AttributeError:
            raise ImportError(f"cannot import name '{attr}' from '{module}'") from None

    table.update(
        _fm_set=FmSet,
        _fm_fmt=_fmt,
        _fm_fmtcall=_fmtcall,
        _fm_rep=lambda a, b: limits_mod.repeat(machine.limits, a, b),
        _fm_tick=machine.ticks.tick,
        _fm_import=fm_import,
        _fm_mkfn=lambda uid, d, kd, c: machine.make_function(program_key, uid, d, kd, c),
        _fm_mkgen=lambda uid, it, c: machine.make_generator(program_key, uid, it, c),
        _fm_locals=host.locals,
        _fm_iter=host.iter,
        _fm_next=host.next,
        _fm_isinstance=host.isinstance,
        _fm_Cell=types.CellType,
        _fm_FunctionType=types.FunctionType,
        _fm_Generator=Generator,
        _fm_Function=Function,
        _fm_Suspension=Suspension,
        _fm_invoke=machine.invoke,
        _fm_END=END,
        _fm_NOCATCH=(MachineAbort, KeyboardInterrupt, SystemExit),
        _fm_AssertionError=AssertionError,
        _fm_in_handler=_in_handler,
        _fm_take_throw=_take_throw,
        _fm_enter=MachineOp("enter", op_enter),
        _fm_exit=MachineOp("exit", op_exit),
        BaseException=BaseException,
    )
    return table


def _print(machine: Machine, *args: Any, sep: Any = " ", end: Any = "\n", file: Any = None, flush: bool = False) -> None:
    if file is not None:
        raise TypeError("print() has no 'file' in Flowmetal: programs reach the outside world only through connectors")
    if sep is None:
        sep = " "
    if end is None:
        end = "\n"
    if not isinstance(sep, str):
        raise TypeError(f"sep must be None or a string, not {type(sep).__name__}")
    if not isinstance(end, str):
        raise TypeError(f"end must be None or a string, not {type(end).__name__}")
    machine.write(sep.join([str(a) for a in args]) + end)
