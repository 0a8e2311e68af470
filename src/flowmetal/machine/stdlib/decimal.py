"""`decimal` for Flowmetal programs: `Decimal`, `Context`, `getcontext`, `setcontext`, the
signals and the rounding modes.

CPython's `decimal` is libmpdec in C, whose work depends on sizes a program chooses: the
precision (an `exp()` at 4,000 digits takes seconds, and CPython allows 10**18), and exponents
(`int(Decimal("1e999999"))` builds a million-digit integer, in minutes). So a program's
values are instances of subclasses of CPython's types whose methods and operators check first:

* a context's precision is at most `MAX_PREC` (100,000 digits);
* `exp`, `ln`, `log10`, `power`/`**` and `sqrt` cost fuel growing with the precision (about
  what they cost in time: `exp`, `ln`, `log10` and `power` as its cube), charged before they run;
* turning a Decimal into an integer (`int()`, `round()`, `math.floor`, `as_integer_ratio`,
  `Fraction(d)`) or an integer into a Decimal costs fuel growing with the square of the digits
  (as it does in time), and formatting with `f` checks the size of the text first.

Results are CPython's; the subclasses turn CPython's results into theirs (the methods are
CPython's own, each wrapped once, below).

The context is per program: `getcontext()` is the running program's own (made at first use, kept
in `Machine.module_state` and in its snapshots, flags and traps included), and the machine
installs it as the thread's decimal context for the duration of each run (so operators, which
take no context argument, use it too) and puts a fresh default back afterwards. CPython's
template contexts (`DefaultContext`, `BasicContext`, `ExtendedContext`) are not offered: they
are process-wide objects a program could change for every other. Of the host values a program
holds, a context's settings are the only ones it may assign: `getcontext().prec = 50` works,
checked as `Context(prec=50)` is (`classes.SETTERS`).
"""

from __future__ import annotations

import decimal as _d
import functools
import re
import weakref
from collections.abc import Callable
from typing import Any

from flowmetal.errors import SnapshotError
from flowmetal.machine.access import register_kind
from flowmetal.machine.limits import ACTIVE
from flowmetal.machine.objects import MemoryLimitExceeded
from flowmetal.machine.stdlib import context as _context
from flowmetal.machine.stdlib.common import charge, looks_like

__all__ = ["MAX_PREC", "Context", "Decimal", "members", "register_codec"]

MAX_PREC = 100_000
_Base = _d.Decimal
_BaseContext = _d.Context


# --------------------------------------------------------------------------------
# the costs of the expensive operations
# --------------------------------------------------------------------------------


def _transcendental(prec: int) -> None:
    """`exp`, `ln`, `log10`, `power` at `prec` digits (measured: about prec**3 / 1500 ticks)."""
    if prec > 60:
        charge(prec * prec * prec // 1500)


def _root(prec: int) -> None:
    if prec > 300:
        charge(prec * prec // 100)


def _int_digits(d: Any) -> None:
    """Turning `d` into an integer: quadratic in its digits (time measured: 50,000 digits, 0.2 s)."""
    if d.is_finite():
        digits = d.adjusted() + 1
        if digits > 2000:
            charge(digits * digits // 1000)


def _ratio_digits(d: Any) -> None:
    if d.is_finite():
        t = d.as_tuple()
        digits = abs(int(t.exponent)) + len(t.digits)
        if digits > 2000:
            charge(digits * digits // 1000)


def _from_int(n: int) -> None:
    bits = n.bit_length()
    if bits > 6000:
        digits = bits * 3 // 10
        charge(digits * digits // 1000)


_SPEC = re.compile(r"(?:.?[<>=^])?[-+ ]?z?#?0?(?P<width>\d*)[,_]?(?:\.(?P<prec>\d+))?(?P<type>[a-zA-Z%]?)\Z", re.S)


def _check_format(d: Any, spec: Any) -> None:
    """The size of `format(d, spec)` before it is written (an `f` format of 1E+999999999 has a
    billion digits)."""
    if not isinstance(spec, str):
        return
    m = _SPEC.match(spec)
    if m is None:
        return
    size = int(m["width"] or 0) + int(m["prec"] or 0)
    if d.is_finite() and m["type"] in ("f", "F", "%", ""):
        size += abs(d.adjusted()) + 3
    limit = ACTIVE[0].max_sequence
    if size > limit:
        raise MemoryLimitExceeded(f"MemoryLimitExceeded: format() of a Decimal would create {size} characters "
                                  f"(limit {limit})")
    charge(size // 64)


def _prec_of(context: Any) -> int:
    return (context if context is not None else _d.getcontext()).prec


# --------------------------------------------------------------------------------
# Decimal
# --------------------------------------------------------------------------------


def own(x: Any) -> Any:
    """A result of CPython's decimal code, as one of ours (tuples and contexts too)."""
    t = type(x)
    if t is _Base:
        return _Base.__new__(Decimal, x)
    if t is tuple:
        return tuple(own(y) for y in x)
    if t is _BaseContext:
        return _own_context(x)
    return x


class Decimal(_Base):
    """Construct a new Decimal object (CPython's, with Flowmetal's checks: see the module)."""

    __slots__ = ()

    def __new__(cls, value: Any = "0", context: Any = None) -> Any:
        if _d.getcontext().__class__ is not Context:  # (once ours is installed, it is this run's program's)
            _program_context()
        if type(value) is int:
            _from_int(value)
        elif isinstance(value, str):
            charge(len(value) // 64)
        return _Base.__new__(cls, value, context)

    @classmethod
    def from_float(cls, f: Any, /) -> Any:
        _program_context()
        return own(_Base.from_float(f))

    def __int__(self) -> int:
        _int_digits(self)
        return _Base.__int__(self)

    def __trunc__(self) -> int:
        _int_digits(self)
        return _Base.__trunc__(self)

    def __floor__(self) -> int:
        _int_digits(self)
        return _Base.__floor__(self)

    def __ceil__(self) -> int:
        _int_digits(self)
        return _Base.__ceil__(self)

    def __round__(self, *args: Any) -> Any:
        if not args or args[0] is None:
            _int_digits(self)
        return own(_Base.__round__(self, *args))

    def as_integer_ratio(self) -> tuple[int, int]:
        _ratio_digits(self)
        return _Base.as_integer_ratio(self)

    def __format__(self, spec: Any, *context: Any) -> str:
        _check_format(self, spec)
        return _Base.__format__(self, spec, *context)

    def __pow__(self, other: Any, modulo: Any = None) -> Any:
        _transcendental(_d.getcontext().prec)
        return own(_Base.__pow__(self, other, modulo))

    def __rpow__(self, other: Any, modulo: Any = None) -> Any:
        _transcendental(_d.getcontext().prec)
        return own(_Base.__rpow__(self, other, modulo))

    @property
    def real(self) -> Any:
        return self

    @property
    def imag(self) -> Any:
        return own(_Base.imag.__get__(self))

    def __copy__(self) -> Any:
        return self

    def __deepcopy__(self, memo: Any) -> Any:
        return self



_OPERATORS = frozenset({"__abs__", "__add__", "__floordiv__", "__mod__", "__mul__", "__neg__", "__pos__", "__radd__",
                        "__rfloordiv__", "__rmod__", "__rmul__", "__rsub__", "__rtruediv__", "__sub__", "__truediv__"})


def _decimal_method(name: str, cost: Callable[[int], None] | None) -> None:
    base = getattr(_Base, name)
    new, base_type, ours = _Base.__new__, _Base, Decimal

    if name in _OPERATORS:  # the hot path: one call of CPython's, one copy into ours
        def method(*args: Any, **kwargs: Any) -> Any:
            r = base(*args)
            return new(ours, r) if r.__class__ is base_type else r
    elif cost is None:
        def method(*args: Any, **kwargs: Any) -> Any:
            return own(base(*args, **kwargs))
    else:
        def method(*args: Any, **kwargs: Any) -> Any:
            cost(_prec_of(kwargs.get("context")))
            return own(base(*args, **kwargs))

    method.__name__ = method.__qualname__ = name
    method.__doc__ = base.__doc__
    setattr(Decimal, name, method)


_HEAVY: dict[str, Callable[[int], None]] = {"exp": _transcendental, "ln": _transcendental,
                                            "log10": _transcendental, "sqrt": _root}
_RESULT_METHODS = ["__abs__", "__add__", "__divmod__", "__floordiv__", "__mod__", "__mul__", "__neg__", "__pos__", "__radd__", "__rdivmod__", "__rfloordiv__", "__rmod__", "__rmul__", "__rsub__", "__rtruediv__", "__sub__", "__truediv__", "canonical", "compare", "compare_signal", "compare_total", "compare_total_mag", "conjugate", "copy_abs", "copy_negate", "copy_sign", "exp", "fma", "ln", "log10", "logb", "logical_and", "logical_invert", "logical_or", "logical_xor", "max", "max_mag", "min", "min_mag", "next_minus", "next_plus", "next_toward", "normalize", "quantize", "radix", "remainder_near", "rotate", "scaleb", "shift", "sqrt", "to_integral", "to_integral_exact", "to_integral_value"]
for _name in _RESULT_METHODS:
    _decimal_method(_name, _HEAVY.get(_name))


# --------------------------------------------------------------------------------
# Context
# --------------------------------------------------------------------------------


def _check_prec(prec: Any) -> None:
    if type(prec) is int and prec > MAX_PREC:
        raise ValueError(f"valid range for prec is [1, {MAX_PREC}] in Flowmetal")


class Context(_BaseContext):
    """The context for arithmetic (CPython's), with a precision of at most `MAX_PREC`."""

    __slots__ = ("__weakref__",)  # (for _SIGNAL_DICT_OWNERS)

    def __init__(self, prec: Any = None, rounding: Any = None, Emin: Any = None, Emax: Any = None,
                 capitals: Any = None, clamp: Any = None, flags: Any = None, traps: Any = None) -> None:
        _check_prec(prec)
        super().__init__(prec, rounding, Emin, Emax, capitals, clamp, flags, traps)

    def copy(self) -> Context:
        return _own_context(self)

    def __copy__(self) -> Context:
        return _own_context(self)


# A context's `flags` and `traps` are mappings that belong to it: snapshots write them as
# (context, which). A program reads them through the checked getattr (they are routed names),
# which remembers each with its context here: id(signal dict) -> (its context, weakly; which).
# Signal dicts cannot be hashed or weakly referred to; an entry is checked before it is trusted.
_SIGNAL_DICT_OWNERS: dict[int, tuple[Any, str]] = {}


def _owned(ctx: Any, which: str) -> Any:
    d = getattr(ctx, which)
    key = id(d)
    owner = _SIGNAL_DICT_OWNERS.get(key)
    if owner is None or owner[0]() is not ctx:
        if len(_SIGNAL_DICT_OWNERS) > 10_000:  # forget the contexts that are gone
            for k in [k for k, (ref, _) in _SIGNAL_DICT_OWNERS.items() if ref() is None]:
                del _SIGNAL_DICT_OWNERS[k]
        _SIGNAL_DICT_OWNERS[key] = (weakref.ref(ctx), which)
    return d


def _signal_dict_of(which: str, ctx: Any) -> Any:
    return _owned(ctx, which)


def _signal_dict_state(d: Any) -> list[Any]:
    owner = _SIGNAL_DICT_OWNERS.get(id(d))
    ctx = owner[0]() if owner is not None else None
    if ctx is None or owner is None or getattr(ctx, owner[1]) is not d:
        raise SnapshotError("a decimal signal dict whose context is gone cannot be kept across a wait")
    return [ctx, owner[1]]


_SIGNALS = (_d.Clamped, _d.DivisionByZero, _d.FloatOperation, _d.Inexact, _d.InvalidOperation, _d.Overflow,
            _d.Rounded, _d.Subnormal, _d.Underflow)
_SIGNAL_NAMES = {s: s.__name__ for s in _SIGNALS}
_SIGNAL_BY_NAME = {s.__name__: s for s in _SIGNALS}


def _own_context(c: Any) -> Context:
    _check_prec(c.prec)
    return Context(c.prec, c.rounding, c.Emin, c.Emax, c.capitals, c.clamp,
                   [s for s in _SIGNALS if c.flags[s]], [s for s in _SIGNALS if c.traps[s]])


def _context_method(name: str, cost: Callable[[int], None] | None) -> None:
    base = getattr(_BaseContext, name)

    if cost is None:
        def method(self: Any, *args: Any, **kwargs: Any) -> Any:
            return own(base(self, *args, **kwargs))
    else:
        def method(self: Any, *args: Any, **kwargs: Any) -> Any:
            cost(self.prec)
            return own(base(self, *args, **kwargs))

    method.__name__ = method.__qualname__ = name
    method.__doc__ = base.__doc__
    setattr(Context, name, method)


_CONTEXT_HEAVY = {**_HEAVY, "power": _transcendental}
_CONTEXT_RESULTS = ["abs", "add", "canonical", "compare", "compare_signal", "compare_total", "compare_total_mag", "copy_abs", "copy_decimal", "copy_negate", "copy_sign", "create_decimal", "create_decimal_from_float", "divide", "divide_int", "divmod", "exp", "fma", "ln", "log10", "logb", "logical_and", "logical_invert", "logical_or", "logical_xor", "max", "max_mag", "min", "min_mag", "minus", "multiply", "next_minus", "next_plus", "next_toward", "normalize", "plus", "power", "quantize", "remainder", "remainder_near", "rotate", "scaleb", "shift", "sqrt", "subtract", "to_integral", "to_integral_exact", "to_integral_value"]
for _name in _CONTEXT_RESULTS:
    _context_method(_name, _CONTEXT_HEAVY.get(_name))


# --------------------------------------------------------------------------------
# the program's context
# --------------------------------------------------------------------------------


def _program_context() -> Context:
    """The running program's context, installed as the thread's (made at first use). Outside a
    run (a snapshot being restored), the thread's own."""
    try:
        state = _context.current().module_state
    except RuntimeError:
        return _d.getcontext()  # type: ignore[return-value]
    ctx = state.get("decimal")
    if not isinstance(ctx, Context):
        ctx = state["decimal"] = Context()
        _d.setcontext(ctx)
    return ctx


def getcontext() -> Context:
    """Returns this program's current context."""
    return _program_context()


def setcontext(context: Any, /) -> None:
    """Set this program's current context."""
    if not isinstance(context, _BaseContext):
        raise TypeError("argument must be a context")
    if type(context) is not Context:
        context = _own_context(context)
    _check_prec(context.prec)
    _context.current().module_state["decimal"] = context
    _d.setcontext(context)


def _on_enter(machine: Any) -> None:
    ctx = machine.module_state.get("decimal")
    if isinstance(ctx, _BaseContext):
        _d.setcontext(ctx)


def _on_leave(machine: Any) -> None:
    if "decimal" in machine.module_state:
        _d.setcontext(_BaseContext())


_SETTABLE = frozenset({"prec", "rounding", "Emin", "Emax", "capitals", "clamp", "flags", "traps"})


def _set_context_attribute(ctx: Any, name: str, value: Any) -> None:
    """`ctx.prec = 50` and the other settings, checked as `Context()` checks them."""
    if name not in _SETTABLE:
        raise AttributeError(f"'decimal.Context' object has no attribute '{name}'")
    if name == "prec":
        _check_prec(value)
    setattr(ctx, name, value)


_context.ENTER_HOOKS.append(_on_enter)
_context.LEAVE_HOOKS.append(_on_leave)


# --------------------------------------------------------------------------------
# the module
# --------------------------------------------------------------------------------

_EXCEPTIONS = (_d.DecimalException, *_SIGNALS, _d.ConversionSyntax, _d.DivisionImpossible, _d.DivisionUndefined,
               _d.InvalidContext)
_ROUNDINGS = ("ROUND_05UP", "ROUND_CEILING", "ROUND_DOWN", "ROUND_FLOOR", "ROUND_HALF_DOWN", "ROUND_HALF_EVEN",
              "ROUND_HALF_UP", "ROUND_UP")
DecimalTuple: type = _d.DecimalTuple
_SIGNAL_DICT: type = type(_BaseContext().flags)


def members() -> dict[str, Any]:
    out: dict[str, Any] = {"Decimal": Decimal, "Context": Context, "getcontext": getcontext,
                           "setcontext": setcontext, "DecimalTuple": DecimalTuple, "MAX_PREC": MAX_PREC}
    out.update((e.__name__, e) for e in _EXCEPTIONS)
    out.update((name, getattr(_d, name)) for name in _ROUNDINGS)
    return out


def _context_state(c: Any) -> list[Any]:
    return [c.prec, c.rounding, c.Emin, c.Emax, c.capitals, c.clamp,
            [_SIGNAL_NAMES[s] for s in _SIGNALS if c.flags[s]], [_SIGNAL_NAMES[s] for s in _SIGNALS if c.traps[s]]]


def _fill_context(c: Any, s: list[Any]) -> None:
    prec, rounding, emin, emax, capitals, clamp, flags, traps = s
    _check_prec(prec)
    c.prec, c.rounding, c.Emin, c.Emax, c.capitals, c.clamp = int(prec), str(rounding), int(emin), int(emax), \
        int(capitals), int(clamp)
    c.clear_flags()
    c.clear_traps()
    for name in flags:
        c.flags[_SIGNAL_BY_NAME[name]] = True
    for name in traps:
        c.traps[_SIGNAL_BY_NAME[name]] = True


def register_codec(codec: Any) -> None:
    codec.register(Decimal, "decimal.Decimal", state=lambda d: [_Base.__str__(d)],
                   build=lambda s: _Base.__new__(Decimal, str(s[0])))
    codec.register(Context, "decimal.Context", state=_context_state, new=lambda: Context(), fill=_fill_context)
    codec.register(DecimalTuple, "decimal.DecimalTuple", state=lambda t: [t.sign, list(t.digits), t.exponent],
                   build=lambda s: DecimalTuple(int(s[0]), tuple(s[1]), s[2]))
    codec.register(_SIGNAL_DICT, "decimal.SignalDict", state=_signal_dict_state,
                   build=lambda s: _owned(s[0], "traps" if s[1] == "traps" else "flags"))
    for exc in _EXCEPTIONS:
        codec.register_exception(exc, f"decimal.{exc.__name__}")
        codec.register_constant(exc, f"decimal:{exc.__name__}")


def _register() -> None:
    looks_like(Decimal, "decimal", "Decimal")
    looks_like(Context, "decimal", "Context")
    register_kind(Decimal, "decimal.Decimal")
    register_kind(Context, "decimal.Context")
    from flowmetal.machine import access

    for which in ("flags", "traps"):  # (see _SIGNAL_DICT_OWNERS)
        access._GET[Context][which] = functools.partial(_signal_dict_of, which)
    register_kind(DecimalTuple, "decimal.DecimalTuple")
    register_kind(_SIGNAL_DICT, "decimal.SignalDict")
    from flowmetal.machine.stdlib.copy import register_atoms

    register_atoms(Decimal, DecimalTuple)
    from flowmetal.machine.classes import SETTERS

    SETTERS[Context] = _set_context_attribute


_register()
