"""A small pooled HTTP/1.1 client for the upstream calls: asyncio protocol + httptools parser.

Why not aiohttp (SPEC §1's pick) or httpx: the benchmark showed aiohttp's client machinery to be
~45 % of the gateway's CPU per request, ~100-110 µs a call on the benchmark machine, and SPEC §1
itself measures the floor of "bare ASGI + a minimal pooled asyncio client" at a fraction of the
aiohttp variant. An LLM upstream needs little of a general client: one POST at a time per
connection, a JSON or SSE answer framed by Content-Length or chunked encoding, keep-alive, TLS.
The decision record, with the before/after figures, is in docs/performance.md ("The upstream
client").

What it does:

- one pool of idle keep-alive connections per (scheme, host, port), reused most-recent-first,
  dropped after :data:`KEEPALIVE_SECONDS` idle (as httpx does, well before common server
  timeouts), sooner when the answer's ``Keep-Alive: timeout=N`` says so, or when the server
  closed them;
- at most :data:`MAX_PER_ORIGIN` connections per origin, in use or idle; a call beyond it waits
  in line (first come, first served) for one to be released, within its timeout;
- bounded answers: :data:`MAX_BODY_BYTES` of body after decompression (a gzip bomb stops there),
  :data:`MAX_HEADER_BYTES` and :data:`MAX_HEADERS` of head; beyond them the exchange fails;
- no silent truncation: a body delimited by the connection's close is complete only when the
  server closed cleanly (a reset, or a compressed body cut short, is an error);
- request targets with spaces or non-ASCII characters are percent-encoded;
- connecting through ``upstream/connect.py``: cached name lookups, Happy Eyeballs, and a refusal
  (instead of a silent bypass) when ``HTTPS_PROXY`` applies;
- no silent resend: a POST to an LLM may have been run (and billed) even when the connection
  broke before the answer, so a broken exchange is an error, and resending it is the route's
  retry policy's call (gateway_server/reliability.py). Idle connections the server has closed are
  noticed and dropped before reuse, which leaves only a microseconds-wide race;
- TLS with the system trust store (``ssl.create_default_context()``, which honours
  ``SSL_CERT_FILE``/``SSL_CERT_DIR``), SNI and hostname checks;
- responses framed by Content-Length, chunked encoding or the connection's close; ``gzip`` and
  ``deflate`` content decoded (we ask for them, as aiohttp did: embeddings compress well);
- a streamed body is read as it arrives, one chunk per socket read, with back-pressure;
- an exchange that is cancelled or fails midway closes its connection, so a client that hangs up
  closes the upstream connection too (the upstream sees the cancellation).

What it does not do, on purpose: proxies (it refuses rather than bypasses one, see above),
HTTP/2, redirects, cookies, ``Expect: 100-continue``.

Timeouts (``TimeoutError``) are one timer per exchange on the loop (``call_at``), not an
``asyncio.timeout`` context: that would cost a task lookup and two ``getpid`` system calls per
request (CPython's fork check in ``get_running_loop``). ``timeout`` covers connecting, sending and
the whole answer of :meth:`ConnectionPool.request`, or up to the head of :meth:`ConnectionPool.send`;
``read_timeout`` bounds each wait of :meth:`Response.iter_chunks`. A timed-out exchange closes its
connection.

Errors: :class:`ConnectError` (could not connect: DNS, refused, TLS handshake) and
:class:`ConnectionBroken` (closed or garbled before the answer was complete), both ``OSError``
subclasses, and :class:`UnsendableRequest`; :mod:`gateway_server.upstream.client` turns them into
the gateway's own errors.
"""

from __future__ import annotations

import asyncio
import ssl
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Mapping
from urllib.parse import quote, urlsplit

from gateway_server.upstream.connect import Resolver, open_socket, proxy_refusal
from gateway_server.upstream.connection import (
    MAX_BODY_BYTES,
    ConnectError,
    ConnectionBroken,
    Headers,
    UnsendableRequest,
    _Connection,
    _too_large,
)

__all__ = ["ConnectError", "ConnectionBroken", "ConnectionPool", "Headers", "Response", "UnsendableRequest"]
KEEPALIVE_SECONDS = 5.0  # idle seconds before a kept-alive connection is dropped (httpx's default)
MAX_PER_ORIGIN = 256  # connections per origin, in use and idle; more calls wait in line


_SAFE_PATH = "/%:@!$&'()*+,;=-._~"
_SAFE_QUERY = _SAFE_PATH + "?"


class _Target:
    """A URL taken apart once: the pool key, the request line's target and the Host header."""

    __slots__ = ("host", "host_header", "key", "port", "target", "tls")

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UnsendableRequest(f"not an http(s) URL: {parts.scheme}://{parts.hostname or ''}")
        self.tls = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.tls else 80)
        default_port = self.port == (443 if self.tls else 80)
        name = f"[{self.host}]" if ":" in self.host else self.host
        self.host_header = name if default_port else f"{name}:{self.port}"
        self.key = (self.tls, self.host, self.port)
        # Spaces, non-ASCII and control characters are percent-encoded (a model or deployment name
        # may hold them); what is already encoded, and the reserved characters, stay as they are.
        path = quote(parts.path or "/", safe=_SAFE_PATH)
        query = quote(parts.query, safe=_SAFE_QUERY)
        self.target = path + (f"?{query}" if query else "")


class Response:
    """The status line and headers of an answer; the body is read with :meth:`read` or
    :meth:`iter_chunks`, and :meth:`release` must follow (:meth:`ConnectionPool.request` does it)."""

    __slots__ = ("_conn", "_pool", "headers", "status")

    def __init__(self, pool: ConnectionPool, conn: _Connection) -> None:
        self._pool = pool
        self._conn = conn
        self.status: int = conn.status
        self.headers = conn.headers

    async def read(self) -> bytes:
        """The whole body (within what is left of the ``timeout`` given to ``send``)."""
        conn = self._conn
        parts = []
        while not conn.complete:
            if conn.paused:  # a body over the read-ahead limit: collect it so reading goes on
                parts.append(conn.take_body())
                if conn.total > conn.max_body:
                    conn.close()
                    raise ConnectionBroken(_too_large(conn.max_body))
            await conn.wait()
        if parts:
            parts.append(conn.take_body())
            return b"".join(parts)
        return conn.take_body()

    async def iter_chunks(self, read_timeout: float | None = None) -> AsyncIterator[bytes]:
        """The body as it arrives: everything one wait brought, decoded. ``read_timeout`` bounds
        each wait (``TimeoutError``)."""
        conn = self._conn
        conn.disarm()  # the timeout of ``send`` ends with the head
        while True:
            if conn.body:
                yield conn.take_body()
                continue
            if conn.complete:
                return
            if read_timeout is not None:
                conn.arm(conn.loop.time() + read_timeout)
            await conn.wait()
            conn.disarm()

    def release(self) -> None:
        """Back to the pool when the answer was read whole and the connection may be kept;
        closed otherwise. Idempotent."""
        conn, self._conn = self._conn, None  # type: ignore[assignment]
        if conn is not None:
            self._pool._release(conn)


class ConnectionPool:
    """Keep-alive connections per origin. Create it inside the running loop; :meth:`close` ends it."""

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | None = None,
        keepalive: float = KEEPALIVE_SECONDS,
        max_per_origin: int = MAX_PER_ORIGIN,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        self._idle: dict[tuple[bool, str, int], list[_Connection]] = {}
        self._targets: dict[str, _Target] = {}
        self._ssl = ssl_context
        self._keepalive = keepalive
        self._max_per_origin = max_per_origin
        self._max_body = max_body_bytes
        self._active: dict[tuple[bool, str, int], int] = {}  # connections per origin, in use or connecting
        self._queues: dict[tuple[bool, str, int], deque[asyncio.Future[None]]] = {}
        self._live: weakref.WeakSet[_Connection] = weakref.WeakSet()  # every open one, for close()
        self._closed = False
        self._loop = asyncio.get_running_loop()
        self._resolver = Resolver(self._loop)

    async def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | None,
        timeout: float | None = None,
    ) -> tuple[int, Headers, bytes]:
        """One whole exchange: ``(status, headers, body)``, all of it within ``timeout`` seconds."""
        conn = await self._exchange(method, url, headers, body, timeout, whole=True)
        try:
            return conn.status, conn.headers, conn.take_body()
        finally:
            self._release(conn)

    async def send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | None,
        timeout: float | None = None,
    ) -> Response:
        """Send the request and wait for the status line and headers, within ``timeout`` seconds;
        the caller reads the body and then calls :meth:`Response.release` (in a ``finally``)."""
        return Response(self, await self._exchange(method, url, headers, body, timeout, whole=False))

    async def close(self) -> None:
        """Close every connection; exchanges in flight and calls waiting in line fail at once."""
        self._closed = True
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()
        for conn in list(self._live):
            conn.abort("the connection pool was closed")
        for queue in self._queues.values():
            for waiter in queue:
                if not waiter.done():
                    waiter.set_exception(ConnectionBroken("the connection pool was closed"))
        self._queues.clear()

    # ------------------------------------------------------------------ internals

    def _target(self, url: str) -> _Target:
        target = self._targets.get(url)
        if target is None:
            if len(self._targets) >= 4096:  # URLs are per route (or per model): bounded in practice
                self._targets.clear()
            target = self._targets[url] = _Target(url)
        return target

    async def _exchange(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | None,
        timeout: float | None,
        *,
        whole: bool,
    ) -> _Connection:
        """Send, then wait for the head (``whole``: for the whole answer, read without pausing).
        Few frames on purpose: every await level here is paid at each wake-up of every call."""
        if self._closed:
            raise RuntimeError("the connection pool is closed")
        target = self._target(url)
        head = _request_head(method, target, headers, body)
        deadline = None if timeout is None else self._loop.time() + timeout
        key = target.key
        active = self._active.get(key, 0)
        if active < self._max_per_origin:
            self._active[key] = active + 1
        else:
            await self._wait_in_line(key, deadline)
        try:
            conn = self._idle_connection(target)
            if conn is None:
                connecting = self._connect(target)
                remaining = None if deadline is None else max(0.0, deadline - self._loop.time())
                conn = await (connecting if remaining is None else asyncio.wait_for(connecting, remaining))
        except BaseException:
            self._free(key)
            raise
        conn.arm(deadline)
        try:
            conn.begin(head, body, streaming=not whole)
            if whole:
                while not conn.complete:
                    await conn.wait()
            else:
                while not conn.headers_done:
                    await conn.wait()
        except BaseException:  # broken, cancelled or timed out midway: its state is unknown
            conn.close()
            self._free(key)
            raise
        return conn

    async def _wait_in_line(self, key: tuple[bool, str, int], deadline: float | None) -> None:
        """Wait until a connection slot of ``key`` is handed over (by :meth:`_free`)."""
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._queues.setdefault(key, deque()).append(waiter)
        timer = None
        if deadline is not None:
            timer = self._loop.call_at(deadline, _expire, waiter, self._max_per_origin)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._free(key)  # the slot was handed over as we left: pass it on
            raise
        finally:
            if timer is not None:
                timer.cancel()

    def _free(self, key: tuple[bool, str, int]) -> None:
        """One connection of ``key`` is done: hand its slot to the first caller in line, if any."""
        queue = self._queues.get(key)
        while queue:
            waiter = queue.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._active[key] -= 1

    def _idle_connection(self, target: _Target) -> _Connection | None:
        idle = self._idle.get(target.key)
        if idle:
            now = time.monotonic()
            while idle:
                conn = idle.pop()
                if not conn.closed and now < conn.expires:
                    return conn
                conn.close()
        return None

    async def _connect(self, target: _Target) -> _Connection:
        context = None
        if target.tls:
            refusal = proxy_refusal(target.host)
            if refusal is not None:
                raise ConnectError(None, refusal)
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            context = self._ssl
        max_body = self._max_body
        try:
            opened = await open_socket(self._loop, self._resolver, target.host, target.port)
            server_hostname = target.host if context else None
            if isinstance(opened, tuple):  # one address: the loop connects to it
                _, conn = await self._loop.create_connection(
                    lambda: _Connection(self._loop, max_body),
                    opened[0],
                    opened[1],
                    ssl=context,
                    server_hostname=server_hostname,
                )
            else:
                try:
                    _, conn = await self._loop.create_connection(
                        lambda: _Connection(self._loop, max_body),
                        sock=opened,
                        ssl=context,
                        server_hostname=server_hostname,
                    )
                except BaseException:
                    opened.close()
                    raise
        except OSError as exc:  # socket.gaierror and ssl.SSLError are OSErrors too
            raise ConnectError(exc.errno, exc.strerror or str(exc)) from exc
        conn.key = target.key
        self._live.add(conn)
        return conn

    def _release(self, conn: _Connection) -> None:
        conn.disarm()
        if conn.reusable() and not self._closed:
            keep = self._keepalive
            hint = conn.headers.get("keep-alive")
            if hint is not None:
                keep = min(keep, _keep_alive_seconds(hint, keep))
            if keep > 0:
                conn.expires = time.monotonic() + keep
                self._idle.setdefault(conn.key, []).append(conn)
            else:
                conn.close()
        else:
            conn.close()
        self._free(conn.key)


def _expire(waiter: asyncio.Future[None], limit: int) -> None:
    if not waiter.done():
        waiter.set_exception(
            TimeoutError(f"no connection to the upstream came free in time ({limit} are in use)")
        )


def _keep_alive_seconds(hint: str, default: float) -> float:
    """The idle time a ``Keep-Alive: timeout=N, max=M`` answer allows, a second short of N (the
    server's clock and our next request's travel); ``max=0`` or ``1`` means no further request."""
    keep = default
    for part in hint.split(","):
        name, _, value = part.strip().partition("=")
        try:
            number = float(value)
        except ValueError:
            continue
        name = name.strip().lower()
        if name == "timeout":
            keep = min(keep, number - 1.0)
        elif name == "max" and number <= 1:
            keep = 0.0
    return keep


def _request_head(method: str, target: _Target, headers: Mapping[str, str], body: bytes | None) -> bytes:
    """The request line and headers. The adapter's headers go out as given (a signed request's
    are part of its signature); ours are added only where the adapter set none of that name."""
    given = {name.lower() for name in headers}
    lines = [f"{method} {target.target} HTTP/1.1"]
    if "host" not in given:
        lines.append(f"Host: {target.host_header}")
    lines.extend(f"{name}: {value}" for name, value in headers.items())
    if body is not None and "content-length" not in given:
        lines.append(f"Content-Length: {len(body)}")
    if "accept" not in given:
        lines.append("Accept: */*")
    if "accept-encoding" not in given:
        lines.append("Accept-Encoding: gzip, deflate")  # we decode both (embeddings compress well)
    text = "\r\n".join(lines)
    breaks = len(lines) - 1
    if text.count("\n") != breaks or text.count("\r") != breaks:  # header injection
        raise UnsendableRequest("a request header name or value contains a line break")
    return text.encode() + b"\r\n\r\n"
