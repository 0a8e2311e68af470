"""`itertools` for Flowmetal programs: CPython's own iterators, at C speed, that survive snapshots.

Each type is a subclass of CPython's (named and printed as CPython's: `itertools.chain`,
`count(5)`) whose constructor only prepares the arguments:

* every iterable it will pull from is wrapped in the machine's fuel counter (`counted`), so
  no loop inside C — `dropwhile` skipping, `islice` seeking, `chain` over empty iterables —
  runs without fuel;
* the combinatoric ones (`product`, `permutations`, `combinations`, ...) copy their inputs
  into tuples at once, as CPython does, but charged and size-checked first.

Snapshots write them through CPython's `__reduce__` (their position included: a `product`
half-way through resumes where it was), allowed type by type in the codec (`allow_reduce`)
and rebuilt without re-wrapping. `pairwise`, which CPython cannot reduce, is CPython's recipe over
`tee` and `islice`.

Callbacks (`key=`, predicates, `accumulate`'s function) are called from C: a callback that
waits raises the documented `RuntimeError` ("cannot wait inside a callback").
"""

from __future__ import annotations

import itertools as _it
from collections.abc import Iterable
from functools import partial
from typing import Any

from flowmetal.machine.access import register_kind
from flowmetal.machine.codec import allow_reduce
from flowmetal.machine.limits import SELF_COUNTING
from flowmetal.machine.show import fm_repr, register_leaf
from flowmetal.machine.stdlib.common import charge, check_size, counted, looks_like, materialize

__all__ = ["members", "register_codec"]

class count(_it.count):
    __slots__ = ()

    def __repr__(self) -> str:
        args = self.__reduce__()[1]
        if len(args) == 2 and isinstance(args[1], int) and args[1] == 1:
            args = args[:1]  # CPython leaves out an integer step of 1
        return "count(" + ", ".join(fm_repr(a) for a in args) + ")"


class repeat(_it.repeat):
    __slots__ = ()

    def __repr__(self) -> str:
        args = self.__reduce__()[1]
        if len(args) == 1:
            return f"repeat({fm_repr(args[0])})"
        return f"repeat({fm_repr(args[0])}, {args[1]})"


class cycle(_it.cycle):
    __slots__ = ()

    def __new__(cls, iterable: Iterable[Any], /) -> Any:
        return super().__new__(cls, counted(iterable))


class accumulate(_it.accumulate):
    __slots__ = ()

    def __new__(cls, iterable: Iterable[Any], func: Any = None, *, initial: Any = None) -> Any:
        return super().__new__(cls, counted(iterable), func, initial=initial)


class chain(_it.chain):
    __slots__ = ()

    def __new__(cls, *iterables: Iterable[Any]) -> Any:
        return super().__new__(cls, *map(counted, iterables))

    @classmethod
    def from_iterable(cls, iterable: Iterable[Iterable[Any]], /) -> Any:
        """Alternative chain() constructor taking a single iterable argument that evaluates lazily."""
        return super().from_iterable(map(counted, counted(iterable)))


class compress(_it.compress):
    __slots__ = ()

    def __new__(cls, data: Iterable[Any], selectors: Iterable[Any]) -> Any:
        return super().__new__(cls, counted(data), counted(selectors))


class dropwhile(_it.dropwhile):
    __slots__ = ()

    def __new__(cls, predicate: Any, iterable: Iterable[Any], /) -> Any:
        return super().__new__(cls, predicate, counted(iterable))


class takewhile(_it.takewhile):
    __slots__ = ()

    def __new__(cls, predicate: Any, iterable: Iterable[Any], /) -> Any:
        return super().__new__(cls, predicate, counted(iterable))


class filterfalse(_it.filterfalse):
    __slots__ = ()

    def __new__(cls, function: Any, iterable: Iterable[Any], /) -> Any:
        return super().__new__(cls, function, counted(iterable))


class starmap(_it.starmap):
    __slots__ = ()

    def __new__(cls, function: Any, iterable: Iterable[Any], /) -> Any:
        return super().__new__(cls, function, counted(iterable))


class groupby(_it.groupby):
    __slots__ = ()

    def __new__(cls, iterable: Iterable[Any], key: Any = None) -> Any:
        return super().__new__(cls, counted(iterable), key)


class islice(_it.islice):
    __slots__ = ()

    def __new__(cls, iterable: Iterable[Any], *args: Any) -> Any:
        return super().__new__(cls, counted(iterable), *args)


class zip_longest(_it.zip_longest):
    __slots__ = ()

    def __new__(cls, *iterables: Iterable[Any], fillvalue: Any = None) -> Any:
        return super().__new__(cls, *map(counted, iterables), fillvalue=fillvalue)


def _pools(iterables: tuple[Iterable[Any], ...], what: str) -> list[tuple[Any, ...]]:
    pools = [materialize(x, what) for x in iterables]
    check_size(sum(map(len, pools)), what)
    return pools


class product(_it.product):
    __slots__ = ()

    def __new__(cls, *iterables: Iterable[Any], repeat: Any = 1) -> Any:
        if type(repeat) is int and repeat > 0:
            check_size(len(iterables) * repeat, "product()")
            charge(len(iterables) * repeat)
        return super().__new__(cls, *_pools(iterables, "product()"), repeat=repeat)


def _check_r(r: Any, what: str) -> None:
    if type(r) is int:
        check_size(r, what)  # CPython allocates r indices up front


class permutations(_it.permutations):
    __slots__ = ()

    def __new__(cls, iterable: Iterable[Any], r: Any = None) -> Any:
        _check_r(r, "permutations()")
        return super().__new__(cls, materialize(iterable, "permutations()"), r)


class combinations(_it.combinations):
    __slots__ = ()

    def __new__(cls, iterable: Iterable[Any], r: Any) -> Any:
        _check_r(r, "combinations()")
        return super().__new__(cls, materialize(iterable, "combinations()"), r)


class combinations_with_replacement(_it.combinations_with_replacement):
    __slots__ = ()

    def __new__(cls, iterable: Iterable[Any], r: Any) -> Any:
        _check_r(r, "combinations_with_replacement()")
        return super().__new__(cls, materialize(iterable, "combinations_with_replacement()"), r)


class pairwise(zip):
    """`pairwise(iterable)`: CPython's cannot be reduced (so could not be snapshotted). This one is
    the recipe `zip(a, islice(b, 1, None))` over `a, b = tee(iterable)`, in C and reducible, and
    like CPython's it pulls nothing before its first item is asked for."""

    __slots__ = ()

    def __new__(cls, iterable: Iterable[Any], /) -> Any:
        a, b = _it.tee(counted(iterable))
        return super().__new__(cls, a, _it.islice(b, 1, None))

    def __repr__(self) -> str:
        return "<itertools.pairwise object>"


def tee(iterable: Iterable[Any], n: int = 2, /) -> tuple[Any, ...]:
    """Returns a tuple of n independent iterators."""
    if type(n) is int:
        check_size(n, "tee()")
        charge(n)
    if type(iterable) is _TEE:
        return _it.tee(iterable, n)
    return _it.tee(counted(iterable), n)


_TEE: type = type(_it.tee(())[0])
_TEE_DATA: type = type(_it.tee(())[0].__reduce__()[2][0])
_GROUPER: type = type(next(_it.groupby("a"))[1])

_TYPES: tuple[type, ...] = (
    accumulate, chain, combinations, combinations_with_replacement, compress, count, cycle, dropwhile,
    filterfalse, groupby, islice, permutations, product, repeat, starmap, takewhile, zip_longest,
)


def members() -> dict[str, Any]:
    out: dict[str, Any] = {cls.__name__: cls for cls in _TYPES}
    out["pairwise"] = pairwise
    out["tee"] = tee
    return out


def register_codec(codec: Any) -> None:
    pass  # every iterator here is written through its __reduce__ (allow_reduce, below)


def _register() -> None:
    for cls in _TYPES:
        base = cls.__mro__[1]
        looks_like(cls, "itertools", base.__name__)
        register_kind(cls, f"itertools.{base.__name__}")
        register_kind(base, f"itertools.{base.__name__}")  # made inside CPython (accumulate's initial)
        # rebuilt without the constructor above: the arguments are wrapped already
        allow_reduce(cls, f"itertools.{base.__name__}", partial(base.__new__, cls))
        allow_reduce(base, f"itertools.{base.__name__}:host")
    for internal, name in ((_TEE, "_tee"), (_TEE_DATA, "_tee_dataobject"), (_GROUPER, "_grouper")):
        register_kind(internal, f"itertools.{name}")
        allow_reduce(internal, f"itertools.{name}")
    looks_like(pairwise, "itertools", "pairwise")
    register_kind(pairwise, "itertools.pairwise")
    allow_reduce(pairwise, "itertools.pairwise", partial(zip.__new__, pairwise))
    for leaf in (count, repeat, pairwise):
        register_leaf(leaf)
    # Iterators that pull from a counted input for every item they give: a consumer need not
    # count them again (`count`, `repeat`, `cycle` and the combinatoric ones give items freely).
    SELF_COUNTING.update((accumulate, chain, compress, dropwhile, takewhile, filterfalse, starmap, groupby,
                          islice, zip_longest, pairwise, _TEE, _GROUPER))


_register()
