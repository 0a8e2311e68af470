"""`statistics` for Flowmetal programs: every function of CPython 3.11's, `NormalDist` (without
`samples`, which draws from the host's random generator) and `StatisticsError`.

The functions are CPython's (pure Python: the same exact arithmetic, results and errors). Ours
hand them their data as a list made a tick per element (and refused past the size limit), check
`quantiles(n=)` before it allocates, and turn the Fractions CPython's code makes into ours.
`NormalDist` is a subclass of CPython's whose arithmetic returns ours; `LinearRegression` (what
`linear_regression` returns) is CPython's named tuple. All are kept across waits.
"""

from __future__ import annotations

import statistics as _st
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from flowmetal.machine.access import register_kind
from flowmetal.machine.show import register_leaf
from flowmetal.machine.stdlib.common import check_size, looks_like, materialize
from flowmetal.machine.stdlib.fractions import Fraction, own

__all__ = ["NormalDist", "members", "register_codec"]

StatisticsError = _st.StatisticsError
LinearRegression: type = _st.LinearRegression
_SCALARS = (int, float, Fraction, Decimal, type(None))


def _data(arg: Any) -> Any:
    """A function's data argument as a list, charged (numbers and None are passed as they are)."""
    if isinstance(arg, _SCALARS):
        return arg
    return list(materialize(arg, "statistics"))


def _own(x: Any) -> Any:
    if type(x) is Decimal:  # CPython's, from arithmetic inside statistics: ours
        from flowmetal.machine.stdlib.decimal import own as own_decimal

        return own_decimal(x)
    return own(x)


def _own_all(result: Any) -> Any:
    if type(result) is list:
        return [_own(x) for x in result]
    if type(result) is tuple:
        return tuple(_own(x) for x in result)
    return _own(result)


def _function(name: str) -> Callable[..., Any]:
    fn = getattr(_st, name)

    def call(*args: Any, **kwargs: Any) -> Any:
        args = tuple(_data(a) for a in args)
        if "weights" in kwargs:
            kwargs["weights"] = _data(kwargs["weights"])
        if name == "quantiles" and type(kwargs.get("n")) is int:
            check_size(kwargs["n"], "quantiles()")
        return _own_all(fn(*args, **kwargs))

    call.__name__ = call.__qualname__ = name
    call.__doc__ = fn.__doc__
    return call


class NormalDist(_st.NormalDist):
    "Normal distribution of a random variable"

    __slots__ = ()

    @classmethod
    def from_samples(cls, data: Any) -> Any:
        "Make a normal distribution instance from sample data."
        return super().from_samples(_data(data))

    def quantiles(self, n: Any = 4) -> Any:
        """Divide into *n* continuous intervals with equal probability."""
        if type(n) is int:
            check_size(n, "NormalDist.quantiles()")
        return super().quantiles(n)

    def samples(self, n: Any, *, seed: Any = None) -> Any:
        raise AttributeError("'NormalDist' object has no attribute 'samples'")

    def __repr__(self) -> str:
        return f"NormalDist(mu={self.mean!r}, sigma={self.stdev!r})"


def _own_dist(x: Any) -> Any:
    if type(x) is _st.NormalDist:
        x.__class__ = NormalDist
    return x


def _wrap_dist(name: str) -> None:
    base = getattr(_st.NormalDist, name)

    def method(*args: Any) -> Any:
        return _own_dist(base(*args))

    method.__name__ = method.__qualname__ = name
    setattr(NormalDist, name, method)


for _name in ("__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__truediv__", "__pos__",
              "__neg__"):
    _wrap_dist(_name)

FUNCTIONS = ("correlation", "covariance", "fmean", "geometric_mean", "harmonic_mean", "linear_regression", "mean",
             "median", "median_grouped", "median_high", "median_low", "mode", "multimode", "pstdev", "pvariance",
             "quantiles", "stdev", "variance")


def members() -> dict[str, Any]:
    out: dict[str, Any] = {name: _function(name) for name in FUNCTIONS}
    out.update(NormalDist=NormalDist, StatisticsError=StatisticsError)
    return out


def register_codec(codec: Any) -> None:
    codec.register_exception(StatisticsError, "statistics.StatisticsError")
    codec.register(NormalDist, "statistics.NormalDist", state=lambda d: [d.mean, d.stdev],
                   build=lambda s: NormalDist(s[0], s[1]))
    codec.register(LinearRegression, "statistics.LinearRegression", state=lambda r: [r.slope, r.intercept],
                   build=lambda s: LinearRegression(s[0], s[1]))


looks_like(NormalDist, "statistics", "NormalDist")
register_kind(NormalDist, "statistics.NormalDist")
register_leaf(NormalDist)
register_kind(LinearRegression, "statistics.LinearRegression")
