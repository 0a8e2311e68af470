"""`queue` for Flowmetal programs: `Queue`, `LifoQueue`, `PriorityQueue`, `SimpleQueue`, `Empty`
and `Full`, as data structures (a program has one thread: nothing else can put or get while it
waits on a queue).

They behave as CPython's do for a single thread: `put`/`get` (with `block` and `timeout`),
`put_nowait`/`get_nowait`, `qsize`, `empty`, `full`, `task_done`, `join`, `maxsize`, and `queue`
(the deque, list or heap underneath). Where CPython would block:

* with a timeout (or `block=False`), `get` on an empty queue raises `Empty` and `put` on a full
  one raises `Full` at once — nothing could change the queue while waiting;
* without a timeout, CPython would wait forever (a deadlock): ours raises `RuntimeError` saying
  so, and so does `join()` with unfinished tasks.

They are kept across waits (their items and unfinished-task count are plain data).
"""

from __future__ import annotations

import heapq as _hq
import queue as _q
from typing import Any

from flowmetal.machine.access import register_kind
from flowmetal.machine.stdlib.collections import deque
from flowmetal.machine.stdlib.common import looks_like

__all__ = ["LifoQueue", "PriorityQueue", "Queue", "SimpleQueue", "members", "register_codec"]

Empty = _q.Empty
Full = _q.Full


def _forever(what: str) -> RuntimeError:
    return RuntimeError(f"{what} would block forever: a Flowmetal program has one thread, so nothing can "
                        "change the queue while it waits (use a timeout, block=False or the _nowait method)")


def _check_timeout(timeout: Any) -> None:
    if timeout is not None and timeout < 0:
        raise ValueError("'timeout' must be a non-negative number")


class Queue:
    """Create a queue object with a given maximum size (if maxsize <= 0, the queue size is infinite)."""

    __slots__ = ("maxsize", "queue", "unfinished_tasks")

    def __init__(self, maxsize: Any = 0) -> None:
        self.maxsize = maxsize
        self.unfinished_tasks = 0
        self._init(maxsize)

    def _init(self, maxsize: Any) -> None:
        self.queue: Any = deque()

    def _qsize(self) -> int:
        return len(self.queue)

    def _put(self, item: Any) -> None:
        self.queue.append(item)

    def _get(self) -> Any:
        return self.queue.popleft()

    def task_done(self) -> None:
        """Indicate that a formerly enqueued task is complete."""
        unfinished = self.unfinished_tasks - 1
        if unfinished < 0:
            raise ValueError("task_done() called too many times")
        self.unfinished_tasks = unfinished

    def join(self) -> None:
        """Blocks until all items in the Queue have been gotten and processed."""
        if self.unfinished_tasks:
            raise _forever("join() with unfinished tasks")

    def qsize(self) -> int:
        """Return the approximate size of the queue."""
        return self._qsize()

    def empty(self) -> bool:
        """Return True if the queue is empty, False otherwise."""
        return not self._qsize()

    def full(self) -> bool:
        """Return True if the queue is full, False otherwise."""
        return 0 < self.maxsize <= self._qsize()

    def put(self, item: Any, block: Any = True, timeout: Any = None) -> None:
        """Put an item into the queue."""
        if self.maxsize > 0 and self._qsize() >= self.maxsize:
            if block and timeout is None:
                raise _forever("put() on a full queue")
            _check_timeout(timeout)
            raise Full
        self._put(item)
        self.unfinished_tasks += 1

    def get(self, block: Any = True, timeout: Any = None) -> Any:
        """Remove and return an item from the queue."""
        if not self._qsize():
            if block and timeout is None:
                raise _forever("get() on an empty queue")
            _check_timeout(timeout)
            raise Empty
        return self._get()

    def put_nowait(self, item: Any) -> None:
        """Put an item into the queue without blocking."""
        self.put(item, block=False)

    def get_nowait(self) -> Any:
        """Remove and return an item from the queue without blocking."""
        return self.get(block=False)

    def __repr__(self) -> str:
        return f"<queue.{type(self).__name__} object>"


class PriorityQueue(Queue):
    """Variant of Queue that retrieves open entries in priority order (lowest first)."""

    __slots__ = ()

    def _init(self, maxsize: Any) -> None:
        self.queue = []

    def _put(self, item: Any) -> None:
        _hq.heappush(self.queue, item)

    def _get(self) -> Any:
        return _hq.heappop(self.queue)


class LifoQueue(Queue):
    """Variant of Queue that retrieves most recently added entries first."""

    __slots__ = ()

    def _init(self, maxsize: Any) -> None:
        self.queue = []

    def _get(self) -> Any:
        return self.queue.pop()


class SimpleQueue:
    """Simple, unbounded, reentrant FIFO queue."""

    __slots__ = ("_fm_items",)

    def __init__(self) -> None:
        self._fm_items: Any = deque()

    def put(self, item: Any, block: Any = True, timeout: Any = None) -> None:
        """Put the item on the queue (never blocks)."""
        self._fm_items.append(item)

    def put_nowait(self, item: Any) -> None:
        """Put an item into the queue without blocking."""
        self._fm_items.append(item)

    def get(self, block: Any = True, timeout: Any = None) -> Any:
        """Remove and return an item from the queue."""
        if not self._fm_items:
            if block and timeout is None:
                raise _forever("get() on an empty queue")
            _check_timeout(timeout)
            raise Empty
        return self._fm_items.popleft()

    def get_nowait(self) -> Any:
        """Remove and return an item from the queue without blocking."""
        return self.get(False)

    def empty(self) -> bool:
        """Return True if the queue is empty, False otherwise."""
        return not self._fm_items

    def qsize(self) -> int:
        """Return the approximate size of the queue."""
        return len(self._fm_items)

    def __repr__(self) -> str:
        return "<_queue.SimpleQueue object>"


def members() -> dict[str, Any]:
    return {"Queue": Queue, "LifoQueue": LifoQueue, "PriorityQueue": PriorityQueue, "SimpleQueue": SimpleQueue,
            "Empty": Empty, "Full": Full}


def _fill_queue(q: Any, state: list[Any]) -> None:
    q.maxsize, q.queue, q.unfinished_tasks = state


def register_codec(codec: Any) -> None:
    for cls in (Queue, LifoQueue, PriorityQueue):
        codec.register(cls, f"queue.{cls.__name__}", state=lambda q: [q.maxsize, q.queue, q.unfinished_tasks],
                       new=lambda cls=cls: cls.__new__(cls), fill=_fill_queue)
    codec.register(SimpleQueue, "queue.SimpleQueue", state=lambda q: [q._fm_items],
                   new=lambda: SimpleQueue.__new__(SimpleQueue), fill=lambda q, s: setattr(q, "_fm_items", s[0]))
    codec.register_exception(Empty, "queue.Empty")
    codec.register_exception(Full, "queue.Full")


def _register() -> None:
    for cls in (Queue, LifoQueue, PriorityQueue):
        looks_like(cls, "queue", cls.__name__)
        register_kind(cls, f"queue.{cls.__name__}")
    looks_like(SimpleQueue, "_queue", "SimpleQueue")
    register_kind(SimpleQueue, "queue.SimpleQueue")


_register()
