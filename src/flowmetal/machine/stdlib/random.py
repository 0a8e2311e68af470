"""`random` for programs: CPython's Mersenne Twister, so a seeded generator gives CPython's
numbers exactly, and fresh randomness only from the durable runtime.

* `random.Random(seed)` instances are pure and deterministic: the same seed gives the same
  sequence as in CPython, on every node and in every replay. They are kept across waits
  mid-sequence (a snapshot writes the generator's state, `getstate()`).
* The module's functions (`random.random()`, `randint`, `choice`, `shuffle`, ...) use a generator
  of the program's own (`context.module_state`), never shared with another program. Unseeded,
  it is seeded at first use from the program's entropy (`context.entropy`): one durable read,
  recorded, so a replay draws exactly the same numbers. `random.seed(x)` makes it deterministic.
* `Random()` and `seed()` without a seed take fresh randomness the same way; nothing reads
  `os.urandom` or the host's clock.

The host's methods run in Python, outside the machine's fuel: what they do per element
(`shuffle`, `sample`, `choices`) is charged, and sizes are checked before allocating.
"""

from __future__ import annotations

import random as _random
from functools import cache
from typing import Any

from flowmetal.machine.access import register_kind
from flowmetal.machine.show import register_leaf
from flowmetal.machine.stdlib import context
from flowmetal.machine.stdlib.common import charge, check_size
from flowmetal.machine.stdlib.context import _CURRENT, builtin

__all__ = ["Random", "members", "register_codec"]

_SEED_TYPES = (int, float, str, bytes)
_getrandbits = _random.Random.getrandbits  # CPython's, in C
_BIG_BITS = 1 << 16
# The module's functions: each is the method of the program's own generator
FUNCTIONS = ("betavariate", "choice", "choices", "expovariate", "gammavariate", "gauss", "getrandbits", "getstate",
             "lognormvariate", "normalvariate", "paretovariate", "randbytes", "randint", "random", "randrange",
             "sample", "seed", "setstate", "shuffle", "triangular", "uniform", "vonmisesvariate", "weibullvariate")


class Random(_random.Random):
    """CPython's `random.Random`, seeded only by the program or by its durable entropy."""

    def seed(self, a: Any = None, version: int = 2) -> None:
        if a is None:
            a = context.entropy("random.Random()").bits(256)
        elif not isinstance(a, _SEED_TYPES):
            # (CPython 3.11 would hash other objects; hashes differ between processes)
            raise TypeError("The only supported seed types are: None,\nint, float, str, bytes, and bytearray.")
        super().seed(a, version)

    def shuffle(self, x: Any) -> None:
        charge(len(x))
        super().shuffle(x)

    def sample(self, population: Any, k: int, *, counts: Any = None) -> list[Any]:
        if type(k) is int:
            check_size(k, "sample()")
            charge(k)
        if counts is not None:
            counts = list(counts)
            total = sum(c for c in counts if type(c) is int)
            check_size(total, "sample(counts=)")
            charge(len(counts))
        return super().sample(population, k, counts=counts)

    def choices(self, population: Any, weights: Any = None, *, cum_weights: Any = None, k: int = 1) -> list[Any]:
        if type(k) is int:
            check_size(k, "choices()")
            charge(k)
        return super().choices(population, weights, cum_weights=cum_weights, k=k)

    def randbytes(self, n: int) -> bytes:
        if type(n) is int:
            check_size(n, "randbytes()")
        return super().randbytes(n)

    def _randbelow(self, n: int) -> int:
        # CPython's `_randbelow_with_getrandbits`, with its C getrandbits (not the checked one
        # below: its k is small), so randint, choice and shuffle draw what CPython's draw
        k = n.bit_length()
        r = _getrandbits(self, k)
        while r >= n:
            r = _getrandbits(self, k)
        return r

    def getrandbits(self, k: int, /) -> int:
        if type(k) is int and k > _BIG_BITS:  # (randint and friends call this with small k)
            check_size(k // 8, "getrandbits()")
        return super().getrandbits(k)

    def __repr__(self) -> str:
        return "<random.Random object>"


Random.__module__ = "random"
Random.__qualname__ = Random.__name__ = "Random"

def _generator() -> Random:
    """The program's own generator, seeded from its entropy at first use."""
    state = context.current().module_state
    gen = state.get("random")
    if gen is None:
        gen = state["random"] = Random()
    return gen


def _function(name: str) -> Any:
    if name in ("seed", "setstate"):
        def call(*args: Any, **kwargs: Any) -> Any:
            state = context.current().module_state
            gen = state.get("random")
            if gen is None:  # about to be set: no fresh randomness is read for it
                gen = state["random"] = Random(0)
            if name == "seed" and (args[0] if args else kwargs.get("a")) is None:
                # `random.seed()`: fresh randomness, recorded under its own name
                kwargs.pop("a", None)
                args = (context.entropy("random.seed()").bits(256), *args[1:])
            return getattr(gen, name)(*args, **kwargs)
    else:
        method = getattr(Random, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            machine = _CURRENT.get()  # (context.current(), inlined: these are called in loops)
            gen = machine.module_state.get("random") if machine is not None else None
            return method(gen if gen is not None else _generator(), *args, **kwargs)

    return builtin(call, name)


@cache
def members() -> dict[str, Any]:
    out: dict[str, Any] = {name: _function(name) for name in FUNCTIONS}
    out["Random"] = Random
    return out


register_kind(Random, "random.Random")
register_leaf(Random)


def register_codec(codec: Any) -> None:
    def state(r: Random) -> list[Any]:
        version, internal, gauss_next = r.getstate()
        return [version, list(internal), gauss_next]

    def fill(r: Random, s: list[Any]) -> None:
        r.setstate((int(s[0]), tuple(int(x) for x in s[1]), None if s[2] is None else float(s[2])))

    # mutable-style: a generator held in several places is one generator again after a restore
    codec.register(Random, "random.Random", state=state, new=lambda: Random(0), fill=fill)
