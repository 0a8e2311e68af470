"""Wake-ups between processes sharing one SQLite store, without busy polling.

Each waiting process binds a Unix datagram socket in a directory next to the
database file; whoever commits something that makes a program runnable (a
message, a new program, a cancellation) sends one byte to every socket there.
A lost notification only delays work until the next fallback poll.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
from pathlib import Path


class Notifier:
    def __init__(self, directory: str | None) -> None:
        self.dir = Path(directory) if directory else None
        self.sock: socket.socket | None = None
        self.path: Path | None = None

    def listen(self) -> None:
        if self.dir is None or self.sock is not None:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / f"{os.getpid()}-{id(self):x}.sock"
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(self.path))
        sock.setblocking(False)
        self.sock = sock

    def wait(self, timeout: float) -> bool:
        """Sleep until notified or `timeout` seconds pass; True if notified."""
        if self.sock is None:
            select.select([], [], [], max(0.0, timeout))
            return False
        ready, _, _ = select.select([self.sock], [], [], max(0.0, timeout))
        if ready:
            with contextlib.suppress(OSError):
                while True:
                    self.sock.recv(64)
            return True
        return False

    def notify(self) -> None:
        if self.dir is None or not self.dir.exists():
            return
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as out:
            out.setblocking(False)
            for entry in self.dir.glob("*.sock"):
                if entry == self.path:
                    continue
                try:
                    out.sendto(b"!", str(entry))
                except (ConnectionRefusedError, FileNotFoundError):
                    with contextlib.suppress(OSError):
                        entry.unlink()  # its process is gone
                except (BlockingIOError, OSError):
                    pass  # its queue is full: it is awake anyway

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        if self.path is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()


def notify_dir_for(url: str) -> str | None:
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):].partition("?")[0]
        return os.path.abspath(path) + ".wake"
    return None
