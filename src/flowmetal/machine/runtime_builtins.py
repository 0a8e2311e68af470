"""What a compiled program runs with: its builtins dictionary (the language's
built-ins, `builtins_table`) and the helpers its generated code calls, which
reach the code as closure cells (`lang/translate.HELPERS`), never as names a
program could bind."""

from __future__ import annotations

import _strptime  # noqa: F401  (one of _C_IMPORTS)
import builtins as host
import sys
import time  # noqa: F401  (one of _C_IMPORTS)
import types
from typing import TYPE_CHECKING, Any

from flowmetal.lang.names import STD_MODULES
from flowmetal.lang.translate import HELPERS
from flowmetal.machine import classes
from flowmetal.machine import limits as limits_mod
from flowmetal.machine.access import builtin_function, fm_callattr, fm_getattr
from flowmetal.machine.builtins_table import make_builtins
from flowmetal.machine.objects import (
    CLOSE_RERAISE,
    DELEGATE,
    END,
    Function,
    Generator,
    GeneratorMethod,
    MachineAbort,
    MemoryLimitExceeded,
    Returned,
    Stepped,
    Suspension,
)
from flowmetal.machine.show import SAFE_TYPES, fm_mod, fm_percent, fm_str, shown, str_call
from flowmetal.machine.stdmods import get_module
from flowmetal.machine.tasks import MachineOp, op_enter, op_exit
from flowmetal.machine.tracebacks import as_cpython_recursion
from flowmetal.machine.values import FmSet

if TYPE_CHECKING:
    from flowmetal.machine.machine import Machine


NOCATCH = (MachineAbort, KeyboardInterrupt, SystemExit)
HOST_MEMORY_ERROR = host.MemoryError


def guard(exc: BaseException) -> None:
    """First statement of every `except` block: the machine's own stops pass through, and an
    allocation the host refused ends the program (`MemoryLimitExceeded`, never caught)."""
    if isinstance(exc, NOCATCH):
        raise exc
    if type(exc) is HOST_MEMORY_ERROR:
        raise MemoryLimitExceeded("MemoryLimitExceeded: the program ran out of memory") from None
    if type(exc) is RecursionError:
        as_cpython_recursion(exc)


def _in_handler(exc: Any, handled: BaseException) -> Any:
    """`raise X` inside an `except` block: chain X to the handled exception, as CPython does."""
    if isinstance(exc, type) and issubclass(exc, BaseException):
        exc = exc()
    if isinstance(exc, BaseException) and exc is not handled and exc.__context__ is None:
        exc.__context__ = handled
    return exc


def _yf_step(it: Any, sent: Any) -> Any:
    """One step of `yield from` over an iterator that is not a resumable generator."""
    if sent is None:
        return host.next(it, END)
    try:
        return it.send(sent)  # AttributeError, as in CPython, for iterators without `send`
    except StopIteration:
        return END


def _take_throw(frame: Any) -> BaseException:
    exc = frame.throw
    frame.throw = None
    return exc


# Host modules CPython's C code imports while a program's frame is the current one: `datetime`'s
# strftime and timetuple() import `time`, strptime imports `_strptime`. C imports through the
# `__import__` of the current frame's builtins, so programs' builtins have one that hands out these
# (already imported) modules and nothing else; programs cannot name it (the checker refuses it).
_C_IMPORTS = frozenset({"time", "_strptime"})


def _c_import(name: Any, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0) -> Any:
    if level == 0 and name in _C_IMPORTS:
        return sys.modules[name]
    raise ImportError(f"'{name}' is not available: use 'import' of a Flowmetal module")


def make_program_builtins(machine: Machine, program_key: str) -> dict[str, Any]:
    table: dict[str, Any] = dict(make_builtins(make_print(machine)))
    table["__import__"] = _c_import
    if program_key == "prelude":
        from flowmetal.machine.prelude import prelude_builtins

        table.update(prelude_builtins())  # shared (cached) objects: snapshots name them
    return table


def make_helpers(machine: Machine, program_key: str) -> dict[str, Any]:
    """The value of each of `HELPERS` for one program of one machine."""

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

    helpers = dict(
        _fm_set=FmSet,
        _fm_getattr=fm_getattr,
        _fm_callattr=fm_callattr,
        _fm_zip=host.zip,
        _fm_ticks=machine.ticks.chain,
        _fm_type=host.type,
        _fm_SAFE=SAFE_TYPES,
        _fm_shown=shown,
        _fm_str1=fm_str,
        _fm_percent=fm_percent,
        _fm_mod=fm_mod,
        _fm_str=str_call,
        _fm_hoststr=host.str,
        _fm_guard=guard,
        _fm_BaseException=host.BaseException,
        _fm_charge=machine.ticks.consume,
        _fm_materialize=machine.ticks.materialize,
        _fm_pow=limits_mod.power,
        _fm_lshift=limits_mod.lshift,
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
        _fm_AssertionError=AssertionError,
        _fm_in_handler=_in_handler,
        _fm_take_throw=_take_throw,
        _fm_yf_step=_yf_step,
        _fm_gen_next=machine.gen_direct,
        _fm_gen_step=lambda g, v, e: machine.gen_direct(g, v, e, CLOSE_RERAISE if isinstance(e, GeneratorExit)
                                                         else DELEGATE),
        _fm_GenMethod=GeneratorMethod,
        _fm_GeneratorExit=GeneratorExit,
        _fm_Stepped=Stepped,
        _fm_Returned=Returned,
        _fm_DELEGATE=DELEGATE,
        _fm_yf_value=lambda v: v.value if type(v) is Returned else None,
        _fm_enter=MachineOp("enter", op_enter),
        _fm_exit=MachineOp("exit", op_exit),
        _fm_setattr=classes.fm_setattr,
        _fm_delattr=classes.fm_delattr,
        _fm_bases=classes.fm_bases,
        _fm_class=classes.fm_class,
        _fm_super=classes.fm_super,
        _fm_FlowObject=classes.FlowObject,
        _fm_MethodType=types.MethodType,
    )
    assert set(helpers) == set(HELPERS), set(helpers) ^ set(HELPERS)
    return helpers


def make_print(machine: Machine) -> Any:
    """The program's `print`: writes to the machine's output (it prints as a built-in)."""

    def print(*args: Any, sep: Any = " ", end: Any = "\n", file: Any = None, flush: bool = False) -> None:
        if file is not None:
            raise TypeError("print() has no 'file' in Flowmetal: programs reach the outside world only through "
                            "connectors")
        if sep is None:
            sep = " "
        if end is None:
            end = "\n"
        if not isinstance(sep, str):
            raise TypeError(f"sep must be None or a string, not {type(sep).__name__}")
        if not isinstance(end, str):
            raise TypeError(f"end must be None or a string, not {type(end).__name__}")
        machine.write(sep.join([fm_str(a) for a in args]) + end)

    return builtin_function(print, "print")
