"""Quick timing of the snapshot codec (not a test).

    PYTHONPATH=src .venv/bin/python bench/bench_codec.py
"""

from __future__ import annotations

import timeit
from typing import Any

from flowmetal.machine.codec import Codec


class Code:
    def __init__(self, name: str) -> None:
        self.name = name


class Frame:
    def __init__(self, code: Code, parent: Frame | None) -> None:
        self.code = code
        self.parent = parent
        self.pc = 17
        self.locals: dict[str, Any] = {}
        self.stack: list[Any] = []
        self.handlers: list[tuple[int, int]] = [(3, 9)]


def _fill_frame(f: Frame, s: list[Any]) -> None:
    f.code, f.parent, f.pc, f.locals, f.stack, f.handlers = s


def make_codec() -> Codec:
    codec = Codec()
    codec.register(Code, "code", state=lambda c: c.name, build=Code)
    codec.register(
        Frame, "frame",
        state=lambda f: [f.code, f.parent, f.pc, f.locals, f.stack, f.handlers],
        new=lambda: Frame.__new__(Frame), fill=_fill_frame,
    )
    return codec


def machine_state() -> Any:
    big = list(range(10_000))
    codes = [Code(f"f{i}") for i in range(10)]
    frames: list[Frame] = []
    parent = None
    for i in range(50):
        f = Frame(codes[i % 10], parent)
        f.locals = {"i": i, "name": f"frame{i}", "xs": big if i == 0 else [i, i + 1], "t": (i, "a")}
        f.stack = [i, None, 1.5, f.locals["xs"]]
        frames.append(f)
        parent = f
    return {"frames": frames, "globals": {"big": big, "count": 3}, "output": ["line\n"] * 5}


def nested_graph() -> Any:
    shared = {"config": [1, 2, 3]}
    return [
        {"id": i, "tags": ("a", "b", i), "data": [i, float(i), str(i), [i, {"k": i}]], "shared": shared}
        for i in range(1_000)
    ]


def bench(name: str, codec: Codec, value: Any, number: int = 200) -> None:
    data = codec.encode(value)
    enc = min(timeit.repeat(lambda: codec.encode(value), number=number, repeat=5)) / number
    dec = min(timeit.repeat(lambda: codec.decode(data), number=number, repeat=5)) / number
    print(
        f"{name:32} {len(data):8d} bytes  encode {enc * 1e3:7.3f} ms  decode {dec * 1e3:7.3f} ms"
        f"  total {(enc + dec) * 1e3:7.3f} ms"
    )


def main() -> None:
    codec = make_codec()
    bench("10,000-int list", codec, list(range(10_000)))
    bench("10,000-int list + 50 frames", codec, machine_state())
    bench("nested graph (1,000 records)", codec, nested_graph(), number=50)


if __name__ == "__main__":
    main()
