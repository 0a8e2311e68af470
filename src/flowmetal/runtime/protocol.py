"""What crosses the pipe between a worker and its executor processes.

One Unix stream socket per executor. Each frame is a 4-byte big-endian
length followed by one msgpack message (msgspec, tagged structs; never
pickle). `PROTOCOL` is checked at the start: an executor of another version
refuses to run.

    worker -> executor                      executor -> worker
    Init      settings, once                Ready     version, pid, hardening report
    RunSlice  row, inbox, outcomes, now,    Ask       a read the slice needs: source,
              seed, use_cache                         history, status, child
    RunBatch  several RunSlice, run in      SliceDone one per slice, as each ends
              turn
    Answer    the reply to an Ask           SliceDone the slice's Commit and output
    RunHost   test-only hook (see below)    HostDone  what the host code returned
    Inspect   describe a program at an      Described the description (tasks, stacks,
              event (a replay)                        variables, waits)

A slice costs one round trip when the executor holds the program's machine
(and a batch of such slices one frame out, whose replies come back as each
slice ends)
(`use_cache`: the worker knows the executor ran the program's last committed
slice); otherwise the executor asks for the program's source and history.
The executor writes nothing anywhere: what comes back is exactly what the
worker commits.

Integers beyond 64 bits (programs have arbitrary-precision ints) travel as
msgpack extension 1 holding their decimal digits.
"""

from __future__ import annotations

import socket
import struct
from typing import Any

import msgspec

from flowmetal.machine.api import Limits
from flowmetal.runtime.slice import Quotas
from flowmetal.store.base import Commit, Event, InboxMessage, ProgramRow

PROTOCOL = 2
MAX_FRAME = 1 << 30
_BIGINT = 1
_LEN = struct.Struct(">I")


class Init(msgspec.Struct, tag="init"):
    version: int
    limits: Limits | None
    quotas: Quotas
    public_url: str
    checkpoint_span: int
    cache_size: int
    memory_limit: int | None  # bytes of address space beyond the executor's start-up size
    harden: bool
    test_hook: bool
    parent_pid: int


class Ready(msgspec.Struct, tag="ready"):
    version: int
    pid: int
    layers: dict[str, str]  # hardening layer -> "on" or why it is off


class RunSlice(msgspec.Struct, tag="slice"):
    row: ProgramRow
    fence: int
    inbox: list[InboxMessage]
    outcomes: dict[str, Any]
    now: float
    seed: int
    use_cache: bool


class RunBatch(msgspec.Struct, tag="batch"):
    slices: list[RunSlice]


class Ask(msgspec.Struct, tag="ask"):
    kind: str  # source | history | status | child
    args: list[Any]


class Answer(msgspec.Struct, tag="answer"):
    value: Any = None
    error: str | None = None  # the read was refused (e.g. a program path): the slice sees error_type
    error_type: str = "ValueError"  # or "TypeError" (a child's arguments that do not fit its main)
    unavailable: bool = False  # the store could not answer: the slice is abandoned, to be run again


class SliceDone(msgspec.Struct, tag="done"):
    status: str
    commit: Commit | None
    output: list[str]
    replace: bool = False  # the executor ran out of memory and exits after this
    unavailable: bool = False  # abandoned because the store was unavailable: nothing to commit
    late: list[float] = msgspec.field(default_factory=list)  # how late each timer it fired was


class RunHost(msgspec.Struct, tag="host"):
    """Test-only: run Python source in the executor as it is (after its hardening) and
    return its `result` variable. Refused unless the pool was made with `test_hook=True`."""

    source: str


class HostDone(msgspec.Struct, tag="hostdone"):
    result: Any


class Inspect(msgspec.Struct, tag="inspect"):
    """Describe a program's state at event `upto` (a replay: `flowmetal inspect`, the API's /state)."""

    row: ProgramRow
    upto: int
    waits: list[Any] | None


class Described(msgspec.Struct, tag="described"):
    value: Any = None
    error: str | None = None


ToExecutor = Init | RunSlice | RunBatch | Answer | RunHost | Inspect
FromExecutor = Ready | Ask | SliceDone | HostDone | Described

# the history answer: (checkpoint (seq, state) or None, events)
History = tuple[tuple[int, bytes] | None, list[Event]]


def _ext_hook(code: int, data: memoryview) -> Any:
    if code == _BIGINT:
        return int(bytes(data))
    return msgspec.msgpack.Ext(code, bytes(data))


def _big_ints(value: Any) -> Any:
    if type(value) is int:
        return value if -(1 << 63) <= value < (1 << 64) else msgspec.msgpack.Ext(_BIGINT, str(value).encode())
    if isinstance(value, dict):
        return {_big_ints(k): _big_ints(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_big_ints(v) for v in value]
    return value


_encoder = msgspec.msgpack.Encoder()


def encode(message: Any) -> bytes:
    try:
        return _encoder.encode(message)
    except OverflowError:  # an int beyond 64 bits somewhere: the slow path
        return _encoder.encode(_big_ints(msgspec.to_builtins(message, builtin_types=(bytes,))))


class ProtocolError(Exception):
    pass


class Connection:
    """Frames over one connected stream socket (blocking)."""

    def __init__(self, sock: socket.socket, incoming: Any) -> None:
        self.sock = sock
        self.decoder = msgspec.msgpack.Decoder(incoming, ext_hook=_ext_hook)

    def send(self, message: Any) -> None:
        data = encode(message)
        self.sock.sendall(_LEN.pack(len(data)) + data)

    def _exactly(self, n: int) -> bytes:
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            k = self.sock.recv_into(view[got:], n - got)
            if k == 0:
                raise EOFError("the other side closed the connection")
            got += k
        return bytes(buf)

    def recv(self) -> Any:
        (n,) = _LEN.unpack(self._exactly(4))
        if n > MAX_FRAME:
            raise ProtocolError(f"a frame of {n} bytes")
        try:
            return self.decoder.decode(self._exactly(n))
        except msgspec.DecodeError as e:
            raise ProtocolError(str(e)) from None

    def close(self) -> None:
        self.sock.close()


def to_executor(sock: socket.socket) -> Connection:
    """The worker's end: reads what executors send."""
    return Connection(sock, FromExecutor)


def from_worker(sock: socket.socket) -> Connection:
    """The executor's end: reads what the worker sends."""
    return Connection(sock, ToExecutor)
