"""Wake-ups between processes sharing one SQLite store, without busy polling.

Each listening process binds a Unix datagram socket in a directory next to the
database file; whoever commits something that makes work runnable (a message,
a new program, a call, a cancellation) sends one byte to every socket there.
A lost notification only delays work until the listener's fallback poll.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
from pathlib import Path

from flowmetal.store.base import Listener


class SocketListener(Listener):
    def __init__(self, directory: str) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / f"{os.getpid()}-{id(self):x}.sock"
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(self.path))
        sock.setblocking(False)
        self.sock: socket.socket | None = sock
        self._address = str(self.path)
        self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)  # kept: interrupts can be frequent
        self._sender.setblocking(False)

    def wait(self, timeout: float) -> bool:
        self.heard = False
        if self.sock is None:
            select.select([], [], [], max(0.0, timeout))
            return False
        ready, _, _ = select.select([self.sock], [], [], max(0.0, timeout))
        if ready:
            with contextlib.suppress(OSError):
                while True:
                    data = self.sock.recv(64)
                    # b"!" from notify_all (the store), b"i" from our own interrupt()
                    self.heard = self.heard or b"!" in data or not data
            return True
        return False

    def interrupt(self) -> None:
        # never block: a full queue means a wake-up is already pending
        with contextlib.suppress(OSError):
            self._sender.sendto(b"i", self._address)

    def close(self) -> None:
        self._sender.close()
        if self.sock is not None:
            self.sock.close()
            self.sock = None
            with contextlib.suppress(OSError):
                self.path.unlink()


_listing: dict[str, tuple[int, list[str]]] = {}  # directory -> (mtime_ns, socket paths)


def _sockets(directory: str) -> list[str]:
    """The listeners' sockets; re-listed only when the directory changed (a busy worker
    notifies after every commit)."""
    try:
        mtime = os.stat(directory).st_mtime_ns
    except FileNotFoundError:
        return []
    cached = _listing.get(directory)
    if cached is not None and cached[0] == mtime:
        return cached[1]
    with os.scandir(directory) as it:
        paths = [e.path for e in it if e.name.endswith(".sock")]
    _listing[directory] = (mtime, paths)
    return paths


def notify_all(directory: str) -> None:
    """One byte to every listener of the store (each wakes and looks for work)."""
    paths = _sockets(directory)
    if not paths:
        return
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as out:
        out.setblocking(False)
        for path in paths:
            try:
                out.sendto(b"!", path)
            except (ConnectionRefusedError, FileNotFoundError):
                with contextlib.suppress(OSError):
                    os.unlink(path)  # its process is gone
            except OSError:
                pass  # its queue is full: it is awake anyway
