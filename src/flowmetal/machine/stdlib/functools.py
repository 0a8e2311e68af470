"""`functools` for Flowmetal programs: `reduce`, `partial`, `lru_cache`, `cache`, `cmp_to_key`,
`wraps`, `update_wrapper` and `total_ordering`.

* `reduce` is CPython's, charged per element; given a function that may wait it runs as the
  prelude's resumable `_reduce`, so the function can wait.
* `partial` is CPython's own type; the machine calls a partial of a function that may wait
  (or of a durable action: `partial(call, "send_mail")`) through the wrapped function itself,
  so it can wait too (`objects.CALL_REDIRECTS`).
* `lru_cache`/`cache` are ours, in Python: CPython's keeps its cache where no snapshot can read
  it. Same keys, hits, misses, eviction order and `cache_info()`; the cache is kept across
  waits. A cached function that may wait runs through the prelude's `_cached_call`.
* `wraps`/`update_wrapper` give the wrapper the wrapped function's `__name__`/`__qualname__`
  (what a program can read of a function) by returning a renamed function.
* `cmp_to_key` makes CPython's key objects (fast sorting); the keys themselves cannot be kept
  across a wait, the function `cmp_to_key` returns can.
"""

from __future__ import annotations

import functools as _ft
import types
from collections.abc import Iterable
from typing import Any

from flowmetal.machine.access import builtin_function, register_kind
from flowmetal.machine.codec import allow_reduce
from flowmetal.machine.objects import CALL_REDIRECTS, EffectFunction, Function
from flowmetal.machine.show import fm_repr, register_leaf, register_repr
from flowmetal.machine.stdlib.common import BuiltinFunction, looks_like, tick_each
from flowmetal.machine.tasks import MachineOp

__all__ = ["members", "register_codec"]

_MISSING: Any = object()


def _reduce(function: Any, iterable: Iterable[Any], *initial: Any) -> Any:
    return _ft.reduce(function, tick_each(iterable), *initial)


# not a plain Python function: generated code would call that directly, and a function that
# may wait must make the machine run the prelude's `_reduce` instead
reduce = BuiltinFunction(_reduce, "reduce")


# --------------------------------------------------------------------------------
# partial
# --------------------------------------------------------------------------------


def _partial_repr(p: Any) -> str:
    parts = [fm_repr(p.func), *map(fm_repr, p.args)]
    parts += [f"{k}={fm_repr(v)}" for k, v in p.keywords.items()]
    return f"functools.partial({', '.join(parts)})"


def _may_wait(fn: Any) -> bool:
    """Whether calling `fn` may wait (so the machine must call it itself, not from C)."""
    t = type(fn)
    if t is Function or t is EffectFunction or t is MachineOp:
        return True
    redirect = CALL_REDIRECTS.get(t)
    return redirect is not None and redirect(None, fn, (), {}) is not None


def _partial_redirect(machine: Any, p: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if not _may_wait(p.func):
        return None
    return p.func, p.args + tuple(args), {**p.keywords, **kwargs}


# --------------------------------------------------------------------------------
# lru_cache and cache
# --------------------------------------------------------------------------------


class _KwdMark:
    """Separates positional from keyword arguments in a cache key (CPython's `kwd_mark`)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<kwd_mark>"


_KWD_MARK = _KwdMark()
_FAST = (int, str)


def _make_key(args: tuple[Any, ...], kwds: dict[str, Any], typed: bool) -> Any:
    """CPython's `lru_cache_make_key`: the same keys, so the same hits and misses."""
    if not kwds and not typed:
        if len(args) == 1 and type(args[0]) in _FAST:
            return args[0]
        return args
    key = args
    if kwds:
        key += (_KWD_MARK,)
        for item in kwds.items():
            key += item
    if typed:
        key += tuple(type(v) for v in args)
        if kwds:
            key += tuple(type(v) for v in kwds.values())
    return key


class _lru_cache_wrapper:
    """A function with a cache: CPython's `_lru_cache_wrapper`, with its cache in plain data."""

    __slots__ = ("_fm_cache", "_fm_func", "_fm_hits", "_fm_maxsize", "_fm_misses", "_fm_name", "_fm_qualname",
                 "_fm_typed")

    def __init__(self, func: Any, maxsize: int | None, typed: bool) -> None:
        self._fm_func = func
        self._fm_maxsize = maxsize
        self._fm_typed = bool(typed)
        self._fm_cache: dict[Any, Any] = {}
        self._fm_hits = 0
        self._fm_misses = 0
        self._fm_name = getattr(func, "__name__", None)
        self._fm_qualname = getattr(func, "__qualname__", None)

    def __call__(self, *args: Any, **kwds: Any) -> Any:
        found, key, value = self._fm_lookup(args, kwds)
        if found:
            return value
        return self._fm_store(key, self._fm_func(*args, **kwds))

    def _fm_lookup(self, args: tuple[Any, ...], kwds: dict[str, Any]) -> tuple[bool, Any, Any]:
        """(True, key, value) for a hit, (False, key, None) for a miss (both counted)."""
        if self._fm_maxsize == 0:
            self._fm_misses += 1
            return False, _MISSING, None
        key = _make_key(args, kwds, self._fm_typed)
        cache = self._fm_cache
        value = cache.get(key, _MISSING)
        if value is _MISSING:
            self._fm_misses += 1
            return False, key, None
        self._fm_hits += 1
        if self._fm_maxsize is not None:  # the most recently used goes last
            del cache[key]
            cache[key] = value
        return True, key, value

    def _fm_store(self, key: Any, value: Any) -> Any:
        if key is _MISSING:
            return value
        cache = self._fm_cache
        maxsize = self._fm_maxsize
        if maxsize is None:
            cache[key] = value
            return value
        if key in cache:  # a recursive call stored it meanwhile: CPython keeps that entry
            return value
        if len(cache) >= maxsize:
            del cache[next(iter(cache))]
        cache[key] = value
        return value

    def cache_info(self) -> Any:
        """Report cache statistics"""
        return _ft._CacheInfo(self._fm_hits, self._fm_misses, self._fm_maxsize, len(self._fm_cache))

    def cache_clear(self) -> None:
        """Clear the cache and cache statistics"""
        self._fm_cache.clear()
        self._fm_hits = self._fm_misses = 0

    def cache_parameters(self) -> dict[str, Any]:
        return {"maxsize": self._fm_maxsize, "typed": self._fm_typed}

    def __getattr__(self, attr: str) -> Any:  # `__name__`, `__qualname__`: not class attributes
        if attr == "__name__" and self._fm_name is not None:
            return self._fm_name
        if attr == "__qualname__" and self._fm_qualname is not None:
            return self._fm_qualname
        raise AttributeError(f"'functools._lru_cache_wrapper' object has no attribute '{attr}'")

    def __get__(self, obj: Any, objtype: Any = None) -> Any:  # as a method, like CPython's
        return self if obj is None else types.MethodType(self, obj)


def _cached_redirect(machine: Any, wrapper: _lru_cache_wrapper, args: tuple[Any, ...],
                     kwargs: dict[str, Any]) -> Any:
    if not _may_wait(wrapper._fm_func):
        return None
    if machine is None:  # (asked only whether it would redirect)
        return True
    return machine.prelude_fns["_cached_call"], (wrapper, args, kwargs), {}


def lru_cache(maxsize: Any = 128, typed: bool = False) -> Any:
    """Least-recently-used cache decorator (see CPython's functools.lru_cache)."""
    if isinstance(maxsize, int):
        if maxsize < 0:
            maxsize = 0
    elif callable(maxsize) and isinstance(typed, bool):
        return _lru_cache_wrapper(maxsize, 128, typed)
    elif maxsize is not None:
        raise TypeError("Expected first argument to be an integer, a callable, or None")

    def decorating_function(user_function: Any) -> _lru_cache_wrapper:
        return _lru_cache_wrapper(user_function, maxsize, typed)

    return decorating_function


def cache(user_function: Any, /) -> Any:
    """Simple lightweight unbounded cache.  Sometimes called "memoize"."""
    return _lru_cache_wrapper(user_function, None, False)


# --------------------------------------------------------------------------------
# wraps, update_wrapper
# --------------------------------------------------------------------------------


class _Renamed:
    """A function renamed by `wraps`/`update_wrapper`: calls go to the function itself."""

    __slots__ = ("_fm_fn", "_fm_name", "_fm_qualname")

    def __init__(self, fn: Any, name: str, qualname: str) -> None:
        self._fm_fn = fn
        self._fm_name = name
        self._fm_qualname = qualname

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._fm_fn(*args, **kwargs)

    def __getattr__(self, attr: str) -> Any:
        if attr == "__name__":
            return self._fm_name
        if attr == "__qualname__":
            return self._fm_qualname
        raise AttributeError(f"'function' object has no attribute '{attr}'")

    def __get__(self, obj: Any, objtype: Any = None) -> Any:
        return self if obj is None else types.MethodType(self, obj)

    def __repr__(self) -> str:
        return f"<function {self._fm_qualname}>"


def _renamed_redirect(machine: Any, r: _Renamed, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return (r._fm_fn, args, kwargs) if _may_wait(r._fm_fn) else None


def update_wrapper(wrapper: Any, wrapped: Any, assigned: Any = _ft.WRAPPER_ASSIGNMENTS,
                   updated: Any = _ft.WRAPPER_UPDATES) -> Any:
    """Update a wrapper function to look like the wrapped function: in Flowmetal, its `__name__`
    and `__qualname__` (returns the renamed function)."""
    inner = wrapper._fm_fn if type(wrapper) is _Renamed else wrapper
    name = getattr(wrapped, "__name__", None) if "__name__" in assigned else None
    qualname = getattr(wrapped, "__qualname__", None) if "__qualname__" in assigned else None
    if name is None and qualname is None:
        return wrapper
    if type(inner) is _lru_cache_wrapper:  # it shows its own names
        inner._fm_name = name or inner._fm_name
        inner._fm_qualname = qualname or inner._fm_qualname
        return inner
    return _Renamed(inner, name or inner.__name__, qualname or inner.__qualname__)


def wraps(wrapped: Any, assigned: Any = _ft.WRAPPER_ASSIGNMENTS, updated: Any = _ft.WRAPPER_UPDATES) -> Any:
    """Decorator factory to apply update_wrapper() to a wrapper function."""
    return _ft.partial(update_wrapper, wrapped=wrapped, assigned=assigned, updated=updated)


# --------------------------------------------------------------------------------
# cmp_to_key
# --------------------------------------------------------------------------------


class KeyWrapper:
    """What `cmp_to_key(mycmp)` returns: called with a value, it makes CPython's key object."""

    __slots__ = ("_fm_cmp", "_fm_key")

    def __init__(self, mycmp: Any) -> None:
        self._fm_cmp = mycmp
        self._fm_key = _ft.cmp_to_key(mycmp)

    def __call__(self, obj: Any, /) -> Any:
        return self._fm_key(obj)

    @property
    def obj(self) -> None:
        return None


def cmp_to_key(mycmp: Any) -> KeyWrapper:
    """Convert a cmp= function into a key= function."""
    return KeyWrapper(mycmp)


builtin_function(cmp_to_key, "cmp_to_key")
_C_KEY: type = type(_ft.cmp_to_key(lambda a, b: 0))


# --------------------------------------------------------------------------------
# the module
# --------------------------------------------------------------------------------


# --------------------------------------------------------------------------------
# total_ordering
# --------------------------------------------------------------------------------


def total_ordering(cls: Any) -> Any:
    """Class decorator that fills in missing ordering methods"""
    from flowmetal.machine.classes import is_program_class

    if not is_program_class(cls):
        # a type the program did not make is shared (a class of ours, a namedtuple's): never changed
        roots = {op for op in _ft._convert if getattr(cls, op, None) is not getattr(object, op, None)}  # type: ignore[attr-defined]
        if not roots:
            raise ValueError("must define at least one ordering operation: < > <= >=")
        if len(roots) == 4:
            return cls  # nothing to add (CPython's answer too)
        raise TypeError(f"total_ordering applies to the program's own classes, not {fm_repr(cls)}")
    # CPython's: the methods it adds are functools' own (`_gt_from_lt`, ...), kept in snapshots by name
    return _ft.total_ordering(cls)


def members() -> dict[str, Any]:
    return {"reduce": reduce, "partial": _ft.partial, "lru_cache": lru_cache, "cache": cache,
            "cmp_to_key": cmp_to_key, "wraps": wraps, "update_wrapper": update_wrapper,
            "total_ordering": total_ordering}


def _fill_cache(w: _lru_cache_wrapper, s: list[Any]) -> None:
    (w._fm_func, w._fm_maxsize, w._fm_typed, pairs, w._fm_hits, w._fm_misses, w._fm_name, w._fm_qualname) = s
    w._fm_cache = dict(pairs)


def register_codec(codec: Any) -> None:
    codec.register_constant(_KWD_MARK, "functools:kwd_mark")
    codec.register(_lru_cache_wrapper, "functools._lru_cache_wrapper",
                   state=lambda w: [w._fm_func, w._fm_maxsize, w._fm_typed, list(w._fm_cache.items()), w._fm_hits,
                                    w._fm_misses, w._fm_name, w._fm_qualname],
                   new=lambda: _lru_cache_wrapper.__new__(_lru_cache_wrapper), fill=_fill_cache)
    codec.register(_Renamed, "functools.renamed", state=lambda r: [r._fm_fn, r._fm_name, r._fm_qualname],
                   build=lambda s: _Renamed(*s))
    codec.register(KeyWrapper, "functools.KeyWrapper", state=lambda k: k._fm_cmp, build=KeyWrapper)
    codec.register(_ft._CacheInfo, "functools.CacheInfo", state=list, build=lambda s: _ft._CacheInfo(*s))
    for name in ("cache_info", "cache_clear", "cache_parameters"):
        codec.register_constant(getattr(_lru_cache_wrapper, name), f"functools._lru_cache_wrapper.{name}")
    for conversions in _ft._convert.values():  # type: ignore[attr-defined]
        for _name, method in conversions:
            codec.register_constant(method, f"functools.{method.__qualname__}")


def _register() -> None:
    register_kind(_ft.partial, "functools.partial")
    register_repr(_ft.partial, _partial_repr)
    allow_reduce(_ft.partial, "functools.partial")
    looks_like(_lru_cache_wrapper, "functools", "_lru_cache_wrapper")
    register_kind(_lru_cache_wrapper, "functools._lru_cache_wrapper")
    looks_like(_Renamed, "builtins", "function")
    register_kind(_Renamed, "function")
    register_leaf(_Renamed)
    looks_like(KeyWrapper, "functools", "KeyWrapper")
    register_kind(KeyWrapper, "functools.KeyWrapper")
    register_kind(_C_KEY, "functools.KeyWrapper")
    register_kind(_ft._CacheInfo, "functools.CacheInfo")
    CALL_REDIRECTS[_ft.partial] = _partial_redirect
    CALL_REDIRECTS[_lru_cache_wrapper] = _cached_redirect
    CALL_REDIRECTS[_Renamed] = _renamed_redirect


_register()
