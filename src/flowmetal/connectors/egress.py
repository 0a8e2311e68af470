"""Where the HTTP connector may connect: the egress policy.

Programs choose the URLs they request, so a node that can reach addresses
the outside cannot (a cloud's instance metadata service, an admin port on
the private network) would lend them its position. The policy is checked
where the connection is made — after DNS resolution, on every redirect, and
against the very address connected to (so a name that resolves elsewhere
the second time cannot slip past it).

Entries (comma-separated or repeated options) are host names (`api.example.com`,
`*.example.com`), addresses or networks (`10.0.0.0/8`, `::1`), or classes:
`link-local` (169.254.0.0/16, fe80::/10), `metadata` (169.254.169.254,
fd00:ec2::254, 100.100.100.200), `loopback`, `private`, `multicast`,
`reserved`, `unspecified`; `none` clears the list.

- `--deny-hosts` (default `link-local,metadata`): refused, whatever else says.
- `--allow-hosts` (default: everything not denied): when given, only these.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import socket
from collections.abc import Iterable
from typing import Any

DEFAULT_DENY = ("link-local", "metadata")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
_METADATA = [ipaddress.ip_network(n) for n in ("169.254.169.254/32", "fd00:ec2::254/128", "100.100.100.200/32")]
_CLASSES = {
    "link-local": lambda a: a.is_link_local,
    "metadata": lambda a: any(a in n for n in _METADATA if n.version == a.version),
    "loopback": lambda a: a.is_loopback,
    "private": lambda a: a.is_private and not a.is_loopback and not a.is_link_local,
    "multicast": lambda a: a.is_multicast,
    "reserved": lambda a: a.is_reserved,
    "unspecified": lambda a: a.is_unspecified,
}


class EgressRefused(Exception):
    """A request the egress policy does not allow (not retried)."""


class PolicyError(ValueError):
    pass


class _Rules:
    def __init__(self, entries: Iterable[str]) -> None:
        self.classes: list[str] = []
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        self.names: list[str] = []
        for raw in entries:
            for entry in (e.strip().lower() for e in raw.split(",")):
                if not entry:
                    continue
                if entry == "none":
                    self.classes, self.networks, self.names = [], [], []
                elif entry in _CLASSES:
                    self.classes.append(entry)
                else:
                    try:
                        self.networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
                    except ValueError:
                        if not all(c.isalnum() or c in "-.*_" for c in entry):
                            raise PolicyError(f"{entry!r} is not a host name, address, network or class") from None
                        self.names.append(entry.rstrip("."))

    def __bool__(self) -> bool:
        return bool(self.classes or self.networks or self.names)

    def name(self, host: str) -> str | None:
        host = host.lower().rstrip(".")
        return next((n for n in self.names if fnmatch.fnmatchcase(host, n)), None)

    def address(self, addr: Address) -> str | None:
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        for c in self.classes:
            if _CLASSES[c](addr):
                return c
        return next((str(n) for n in self.networks if n.version == addr.version and addr in n), None)


class EgressPolicy:
    def __init__(self, allow: Iterable[str] = (), deny: Iterable[str] = DEFAULT_DENY) -> None:
        self.allow = _Rules(allow)
        self.deny = _Rules(deny)

    def addresses(self, host: str, port: int) -> list[str]:
        """The addresses of `host` a request may connect to, in resolver order; EgressRefused if
        none may."""
        denied_name = self.deny.name(host)
        if denied_name:
            raise EgressRefused(f"{host} is refused by the egress policy (--deny-hosts {denied_name})")
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as e:
            raise OSError(f"cannot resolve {host}: {e.strerror}") from None
        allowed, reasons = [], []
        for info in infos:
            ip = str(info[4][0])
            addr = ipaddress.ip_address(ip.split("%")[0])
            why = self.deny.address(addr)
            if why is not None:
                reasons.append(f"{ip} is {why}")
            elif self.allow and self.allow.name(host) is None and self.allow.address(addr) is None:
                reasons.append(f"{ip} is not in --allow-hosts")
            elif ip not in allowed:
                allowed.append(ip)
        if not allowed:
            raise EgressRefused(f"{host} is refused by the egress policy ({'; '.join(reasons) or 'no address'})")
        return allowed


def guard(transport: Any, policy: EgressPolicy) -> Any:
    """Make an httpx.HTTPTransport connect only where `policy` allows."""
    import httpcore

    pool = transport._pool  # httpcore.ConnectionPool: its network backend makes every connection
    inner = pool._network_backend

    class Guarded(httpcore.NetworkBackend):
        def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                        socket_options: Any = None) -> Any:
            last: Exception | None = None
            for ip in policy.addresses(host, port):
                try:
                    return inner.connect_tcp(ip, port, timeout=timeout, local_address=local_address,
                                             socket_options=socket_options)
                except httpcore.ConnectError as e:
                    last = e
            assert last is not None
            raise last

        def connect_unix_socket(self, path: str, timeout: float | None = None, socket_options: Any = None) -> Any:
            raise EgressRefused("Unix sockets are refused by the egress policy")

        def sleep(self, seconds: float) -> None:
            inner.sleep(seconds)

    pool._network_backend = Guarded()
    return transport
