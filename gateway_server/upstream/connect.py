"""Opening upstream connections: cached name lookups, Happy Eyeballs, and no silent proxy bypass.

- **DNS cache.** ``getaddrinfo`` results are kept :data:`DNS_TTL` seconds per (host, port), as
  aiohttp's connector did (``ttl_dns_cache=10``): a new connection to a known upstream costs no
  lookup, and a changed record is seen within seconds. A failed lookup is not cached.
- **Happy Eyeballs** (RFC 8305, as asyncio's ``happy_eyeballs_delay`` does; uvloop's
  ``create_connection`` has no such option): the addresses are interleaved by family (IPv6, IPv4,
  IPv6, ...) and tried in a staggered race, the next one starting :data:`HAPPY_EYEBALLS_DELAY`
  seconds after the previous or as soon as it fails. A host with one address is connected directly.
- **Proxies.** The pool does not tunnel through ``HTTPS_PROXY`` (the httpx transport does:
  ``transport: httpx``). When that variable is set, a pool connection to an HTTPS upstream that
  ``NO_PROXY`` does not exempt is refused with a message saying so, instead of bypassing the proxy
  silently; the server checks its pool routes at start-up (``check_proxy``) the same way.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import time
from asyncio.staggered import staggered_race
from collections.abc import Iterable
from functools import partial
from typing import Any

__all__ = [
    "DNS_TTL",
    "HAPPY_EYEBALLS_DELAY",
    "ProxyRefused",
    "Resolver",
    "check_proxy",
    "open_socket",
    "proxy_refusal",
]

DNS_TTL = 10.0
HAPPY_EYEBALLS_DELAY = 0.25

AddrInfo = tuple[Any, ...]  # (family, type, proto, canonname, sockaddr)


class ProxyRefused(OSError):
    """``HTTPS_PROXY`` is set, and the pool does not speak through proxies."""


def proxy_refusal(host: str, environ: Any = None) -> str | None:
    """The message refusing a direct connection to HTTPS ``host``, or None when no proxy applies."""
    environ = os.environ if environ is None else environ
    proxy = environ.get("HTTPS_PROXY") or environ.get("https_proxy")
    if not proxy:
        return None
    no_proxy = environ.get("NO_PROXY") or environ.get("no_proxy") or ""
    # urllib's own NO_PROXY matching (suffixes, ports, "*"); imported only when a proxy is set
    from urllib import request as urllib_request

    bypass = urllib_request.proxy_bypass_environment  # type: ignore[attr-defined]
    if no_proxy and bypass(host, {"no": no_proxy}):
        return None
    return (
        f"HTTPS_PROXY is set, but the gateway's own upstream client (transport 'pool') does not use "
        f"proxies; it will not connect to {host} around it. Use the httpx transport, which honours the "
        "proxy variables (`transport: httpx` on the route, or `server.upstream_transport: httpx`), list "
        "the host in NO_PROXY to connect directly, or unset HTTPS_PROXY for the gateway."
    )


def check_proxy(urls: Iterable[str], environ: Any = None) -> None:
    """Raise :class:`ProxyRefused` for the first HTTPS URL that a set ``HTTPS_PROXY`` would cover."""
    from urllib.parse import urlsplit

    for url in urls:
        parts = urlsplit(url)
        if parts.scheme == "https" and parts.hostname:
            message = proxy_refusal(parts.hostname, environ)
            if message is not None:
                raise ProxyRefused(message)


class Resolver:
    """``getaddrinfo`` with a short cache (see the module docstring)."""

    __slots__ = ("_cache", "_loop", "_pending", "ttl")

    def __init__(self, loop: asyncio.AbstractEventLoop, ttl: float = DNS_TTL) -> None:
        self._loop = loop
        self._cache: dict[tuple[str, int], tuple[float, list[AddrInfo]]] = {}
        self._pending: dict[tuple[str, int], asyncio.Future[list[AddrInfo]]] = {}
        self.ttl = ttl

    async def resolve(self, host: str, port: int) -> list[AddrInfo]:
        now = time.monotonic()
        cached = self._cache.get((host, port))
        if cached is not None and cached[0] > now:
            return cached[1]
        literal = _literal(host, port)
        if literal is not None:  # an IP address: no lookup, no worker thread
            return literal
        # Connections opened together (a burst after idle) share one lookup.
        pending = self._pending.get((host, port))
        if pending is None:
            pending = self._pending[(host, port)] = asyncio.ensure_future(
                self._loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            )
            pending.add_done_callback(lambda _: self._pending.pop((host, port), None))
        infos: list[AddrInfo] = await asyncio.shield(pending)
        if len(self._cache) >= 1024:  # hosts are the config's upstreams: few; never let it grow
            self._cache.clear()
        self._cache[(host, port)] = (now + self.ttl, infos)
        return infos


def _literal(host: str, port: int) -> list[AddrInfo] | None:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if address.version == 6:
        return [(socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (host, port, 0, 0))]
    return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (host, port))]


def _interleave(infos: list[AddrInfo]) -> list[AddrInfo]:
    """Alternate address families, keeping the resolver's order within each (RFC 8305 §4)."""
    by_family: dict[int, list[AddrInfo]] = {}
    for info in infos:
        by_family.setdefault(info[0], []).append(info)
    queues = list(by_family.values())
    ordered = []
    while any(queues):
        for queue in queues:
            if queue:
                ordered.append(queue.pop(0))
    return ordered


async def _connect_one(loop: asyncio.AbstractEventLoop, info: AddrInfo) -> socket.socket:
    family, kind, proto, _, address = info
    sock = socket.socket(family, kind, proto)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await loop.sock_connect(sock, address)
    except BaseException:
        sock.close()
        raise
    return sock


async def open_socket(
    loop: asyncio.AbstractEventLoop, resolver: Resolver, host: str, port: int
) -> socket.socket | tuple[str, int]:
    """A connected non-blocking socket to ``host:port`` (OSError when no address answers), or,
    when the name has a single address, that address for the loop's own ``create_connection``
    (one step instead of two: the common case of one upstream address costs no more than before)."""
    infos = _interleave(await resolver.resolve(host, port))
    if len(infos) == 1:
        address = infos[0][4]
        return address[0], address[1]
    sock, _, errors = await staggered_race(
        [partial(_connect_one, loop, info) for info in infos], HAPPY_EYEBALLS_DELAY
    )
    if sock is None:
        failures = [error for error in errors if error is not None]
        if len(failures) == 1 or len({str(error) for error in failures}) == 1:
            raise failures[0]
        raise OSError(f"every address of {host} failed: " + "; ".join(str(error) for error in failures))
    return sock  # type: ignore[no-any-return]
