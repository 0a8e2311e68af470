"""`heapq` and `bisect` for Flowmetal programs.

A heap is a plain list, so it is kept across waits like any list. The functions are CPython's
own (in C), except:

* `heapify` charges a tick per element (it does its work in C); `heappush`/`heappop` and the
  `bisect` functions do logarithmic work and cost what a call costs;
* `nsmallest`/`nlargest` consume their input a tick per element;
* `merge` is ours: CPython's is a generator, whose frame no snapshot can write. Ours is an
  iterator object with the same results (ties go to the earlier input, `key=` and
  `reverse=`), the same lazy start (nothing is read before the first `next()`), and its state
  in plain data: it is kept across waits half-way through.
"""

from __future__ import annotations

import bisect as _bisect
import heapq as _hq
from typing import Any

from flowmetal.machine.access import register_kind
from flowmetal.machine.show import register_leaf
from flowmetal.machine.stdlib.common import charge, counted, looks_like, tick_each

__all__ = ["Merge", "bisect_members", "members", "merge", "register_codec"]


def heapify(heap: Any, /) -> None:
    """Transform list into a heap, in-place, in O(len(heap)) time."""
    if type(heap) is list:
        charge(len(heap))
    _hq.heapify(heap)


def nsmallest(n: Any, iterable: Any, key: Any = None) -> list[Any]:
    """Find the n smallest elements in a dataset (equivalent to sorted(iterable, key=key)[:n])."""
    return _hq.nsmallest(n, tick_each(iterable), key=key)


def nlargest(n: Any, iterable: Any, key: Any = None) -> list[Any]:
    """Find the n largest elements in a dataset (equivalent to sorted(iterable, key=key, reverse=True)[:n])."""
    return _hq.nlargest(n, tick_each(iterable), key=key)


def merge(*iterables: Any, key: Any = None, reverse: bool = False) -> Merge:
    """Merge multiple sorted inputs into a single sorted output."""
    return Merge(iterables, key, reverse)


class Merge:
    """What `merge()` returns: CPython's `heapq.merge` as an iterator whose state is plain data.

    Before the first `next()` the state is the inputs (`_fm_its`, not yet iterated); after it,
    `_fm_heap` holds one entry per input that has items left: `[key, order, value, iterator]`
    (`[value, order, iterator]` without a key), ordered as CPython orders its own."""

    __slots__ = ("_fm_heap", "_fm_its", "_fm_key", "_fm_reverse")

    def __init__(self, iterables: tuple[Any, ...], key: Any, reverse: bool) -> None:
        self._fm_its: list[Any] | None = list(iterables)
        self._fm_heap: list[Any] = []
        self._fm_key = key
        self._fm_reverse = reverse

    def __iter__(self) -> Merge:
        return self

    def _fm_start(self, iterables: list[Any]) -> None:
        self._fm_its = None
        key = self._fm_key
        direction = -1 if self._fm_reverse else 1
        heap: list[Any] = self._fm_heap
        for order, it in enumerate(iterables):
            it = counted(it)
            for value in it:
                if key is None:
                    heap.append([value, order * direction, it])
                else:
                    heap.append([key(value), order * direction, value, it])
                break
        if self._fm_reverse:
            _hq._heapify_max(heap)
        else:
            _hq.heapify(heap)

    def __next__(self) -> Any:
        if self._fm_its is not None:
            self._fm_start(self._fm_its)
        heap = self._fm_heap
        if not heap:
            raise StopIteration
        top = heap[0]
        key = self._fm_key
        it = top[-1]
        value = top[0] if key is None else top[2]
        for nxt in it:
            if key is None:
                top[0] = nxt
            else:
                top[0] = key(nxt)
                top[2] = nxt
            if self._fm_reverse:
                _hq._heapreplace_max(heap, top)  # type: ignore[attr-defined]
            else:
                _hq.heapreplace(heap, top)
            return value
        if self._fm_reverse:
            _hq._heappop_max(heap)  # type: ignore[attr-defined]
        else:
            _hq.heappop(heap)
        return value

    def __repr__(self) -> str:
        return "<generator object merge>"


def members() -> dict[str, Any]:
    return {
        "heappush": _hq.heappush,
        "heappop": _hq.heappop,
        "heapify": heapify,
        "heapreplace": _hq.heapreplace,
        "heappushpop": _hq.heappushpop,
        "nlargest": nlargest,
        "nsmallest": nsmallest,
        "merge": merge,
    }


def bisect_members() -> dict[str, Any]:
    return {name: getattr(_bisect, name)
            for name in ("bisect", "bisect_left", "bisect_right", "insort", "insort_left", "insort_right")}


def _fill_merge(m: Merge, state: list[Any]) -> None:
    m._fm_its, m._fm_heap, m._fm_key, m._fm_reverse = state


def register_codec(codec: Any) -> None:
    codec.register(Merge, "heapq.merge", state=lambda m: [m._fm_its, m._fm_heap, m._fm_key, m._fm_reverse],
                   new=lambda: Merge.__new__(Merge), fill=_fill_merge)


looks_like(Merge, "builtins", "generator")
register_kind(Merge, "heapq.merge")
register_leaf(Merge)
