"""`fractions` for Flowmetal programs: `Fraction`.

Ours is a subclass of CPython's (pure Python: same results, errors and reprs). CPython's
arithmetic returns instances of its own class; ours turn them into ours (the same object, its
class changed: the layouts are the same), so that every Fraction a program holds is ours.

What the subclass adds: a size check before every operation whose result can be far larger than
its operands — `Fraction("1e999999999")`, a `Decimal` with a huge exponent, `f ** n`,
`round(f, n)` — as `**` has for integers (`MemoryLimitExceeded`); and a snapshot encoding (the
numerator and denominator).
"""

from __future__ import annotations

import decimal as _decimal
import fractions as _fr
import numbers
from typing import Any

from flowmetal.machine.access import register_kind
from flowmetal.machine.limits import ACTIVE, _too_many_bits
from flowmetal.machine.stdlib.common import looks_like

__all__ = ["Fraction", "check_decimal", "members", "own", "register_codec"]

_BITS_PER_DIGIT = 3.33


def _check_bits(bits: float, what: str) -> None:
    _too_many_bits(ACTIVE[0], int(bits), what)


def check_decimal(d: Any, what: str) -> None:
    """Refuse turning a Decimal with a huge exponent into an integer ratio."""
    if isinstance(d, _decimal.Decimal) and d.is_finite():
        t = d.as_tuple()
        _check_bits((abs(int(t.exponent)) + len(t.digits)) * _BITS_PER_DIGIT, f"{what} of Decimal({str(d)[:20]!r})")


def _check_string(s: str) -> None:
    m = _fr._RATIONAL_FORMAT.match(s)  # type: ignore[attr-defined]
    if m is not None and m.group("exp"):
        exp = m.group("exp").replace("_", "")
        if len(exp) > 12:
            _check_bits(10 ** 12, f"Fraction({s[:20]!r}...)")
        _check_bits(abs(int(exp)) * _BITS_PER_DIGIT, f"Fraction({s[:20]!r})")


def own(x: Any) -> Any:
    """A result of CPython's Fraction code, as one of ours."""
    if type(x) is _fr.Fraction:
        x.__class__ = Fraction
    elif type(x) is tuple:
        for y in x:
            if type(y) is _fr.Fraction:
                y.__class__ = Fraction
    return x


class Fraction(_fr.Fraction):
    """This class implements rational numbers."""

    __slots__ = ()

    def __new__(cls, numerator: Any = 0, denominator: Any = None) -> Any:
        if denominator is None:
            if isinstance(numerator, str):
                _check_string(numerator)
            elif isinstance(numerator, _decimal.Decimal):
                check_decimal(numerator, "Fraction()")
        return super().__new__(cls, numerator, denominator)

    @classmethod
    def from_decimal(cls, dec: Any) -> Any:
        """Converts a finite Decimal instance to a rational number, exactly."""
        check_decimal(dec, "Fraction.from_decimal()")
        return own(super().from_decimal(dec))

    @classmethod
    def from_float(cls, f: Any) -> Any:
        """Converts a finite float to a rational number, exactly."""
        return own(super().from_float(f))

    def limit_denominator(self, max_denominator: Any = 1000000) -> Any:
        """Closest Fraction to self with denominator at most max_denominator."""
        return own(super().limit_denominator(max_denominator))

    def __pow__(a, b: Any) -> Any:
        if isinstance(b, numbers.Rational) and b.denominator == 1:
            n = abs(int(b.numerator))
            if n > 64:
                size = max(a.numerator.bit_length(), a.denominator.bit_length())
                if size > 1:
                    _check_bits((size - 1) * n, f"Fraction ** {n}")
        return own(super().__pow__(b))

    def __rpow__(b, a: Any) -> Any:
        if b.denominator == 1 and isinstance(a, int) and abs(a) > 1 and abs(b.numerator) > 64:
            _check_bits((abs(a).bit_length() - 1) * abs(b.numerator), f"{a} ** Fraction")
        return own(super().__rpow__(a))

    def __round__(self, ndigits: Any = None) -> Any:
        if type(ndigits) is int:
            _check_bits(abs(ndigits) * _BITS_PER_DIGIT, f"round(Fraction, {ndigits})")
        return own(super().__round__(ndigits))

    def __repr__(self) -> str:
        return f"Fraction({self.numerator}, {self.denominator})"


def _wrap(name: str) -> None:
    base = getattr(_fr.Fraction, name)

    def method(*args: Any) -> Any:
        return own(base(*args))

    method.__name__ = method.__qualname__ = name
    method.__doc__ = base.__doc__
    setattr(Fraction, name, method)


for _name in ("__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__truediv__", "__rtruediv__",
              "__floordiv__", "__rfloordiv__", "__mod__", "__rmod__", "__divmod__", "__rdivmod__", "__pos__",
              "__neg__", "__abs__", "conjugate"):
    _wrap(_name)


def members() -> dict[str, Any]:
    return {"Fraction": Fraction}


def register_codec(codec: Any) -> None:
    codec.register(Fraction, "fractions.Fraction", state=lambda f: [f.numerator, f.denominator],
                   build=lambda s: Fraction(int(s[0]), int(s[1])))


looks_like(Fraction, "fractions", "Fraction")
register_kind(Fraction, "fractions.Fraction")

