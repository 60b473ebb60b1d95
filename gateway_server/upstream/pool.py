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
  dropped after :data:`KEEPALIVE_SECONDS` idle or when the server closed them; no cap on
  connections (concurrency is bounded by the callers, as before);
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

What it does not do, on purpose: proxies from the environment (the aiohttp session did not
either), HTTP/2, redirects, cookies, ``Expect: 100-continue``.

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
import zlib
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import httptools

__all__ = ["ConnectError", "ConnectionBroken", "ConnectionPool", "Headers", "Response", "UnsendableRequest"]

KEEPALIVE_SECONDS = 30.0
_HIGH_WATER = 256 * 1024  # bytes of a streamed body held unread before we stop reading the socket


class ConnectError(OSError):
    """The connection could not be made (name lookup, refused, unreachable, TLS handshake)."""


class ConnectionBroken(OSError):
    """The connection closed, or sent something that is not HTTP/1.1, before a complete answer."""


class UnsendableRequest(ValueError):
    """The URL is not http(s), or a header would break the request's framing (a line break)."""


class Headers(dict[str, str]):
    """Response headers: lower-cased names; ``get``/``[]``/``in`` take any case. A repeated header
    keeps its values joined with ``", "`` (RFC 9110 §5.3)."""

    __slots__ = ()

    def get(self, name: str, default: Any = None) -> Any:
        return dict.get(self, name.lower(), default)

    def __getitem__(self, name: str) -> str:
        return dict.__getitem__(self, name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and dict.__contains__(self, name.lower())


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
        self.target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


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
        self, *, ssl_context: ssl.SSLContext | None = None, keepalive: float = KEEPALIVE_SECONDS
    ) -> None:
        self._idle: dict[tuple[bool, str, int], list[_Connection]] = {}
        self._targets: dict[str, _Target] = {}
        self._ssl = ssl_context
        self._keepalive = keepalive
        self._closed = False
        self._loop = asyncio.get_running_loop()

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
        self._closed = True
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()

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
        conn = self._idle_connection(target)
        if conn is None:
            connecting = self._connect(target)
            conn = await (connecting if timeout is None else asyncio.wait_for(connecting, timeout))
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
            raise
        return conn

    def _idle_connection(self, target: _Target) -> _Connection | None:
        idle = self._idle.get(target.key)
        if idle:
            now = time.monotonic()
            while idle:
                conn = idle.pop()
                if not conn.closed and now - conn.idle_since < self._keepalive:
                    return conn
                conn.close()
        return None

    async def _connect(self, target: _Target) -> _Connection:
        context = None
        if target.tls:
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            context = self._ssl
        try:
            _, conn = await self._loop.create_connection(
                lambda: _Connection(self._loop),
                target.host,
                target.port,
                ssl=context,
                server_hostname=target.host if context else None,
            )
        except OSError as exc:  # socket.gaierror and ssl.SSLError are OSErrors too
            raise ConnectError(exc.errno, exc.strerror or str(exc)) from exc
        conn.key = target.key
        return conn

    def _release(self, conn: _Connection) -> None:
        conn.disarm()
        if conn.reusable() and not self._closed:
            conn.idle_since = time.monotonic()
            self._idle.setdefault(conn.key, []).append(conn)
        else:
            conn.close()


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


class _Connection(asyncio.Protocol):
    """One socket, one exchange at a time; httptools calls the ``on_*`` methods as bytes arrive."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.key: tuple[bool, str, int] = (False, "", 0)
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.idle_since = 0.0
        self._waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.headers = Headers()
        self.headers_done = False
        self.informational = False
        self.complete = False
        self.keep_alive = False
        self.framed = False  # Content-Length or chunked: else the body ends when the server closes
        self.body: list[bytes] = []
        self.buffered = 0
        self.paused = False
        self.streaming = False
        self.error: ConnectionBroken | TimeoutError | None = None
        self.decoder: Any = None

    # ---- the exchange

    def begin(self, head: bytes, body: bytes | None, *, streaming: bool) -> None:
        if self.closed or self.transport is None:
            raise ConnectionBroken("the connection is closed")
        self._reset()
        self.streaming = streaming  # read ahead at most _HIGH_WATER bytes; else take it all
        self.transport.write(head + body if body else head)

    def wait(self) -> asyncio.Future[None]:
        """A future done when the parser has moved on (more bytes, the end), or failed with the
        exchange's error. A plain future rather than a coroutine: one frame less at every wake-up."""
        if self.error is not None:
            raise self.error
        waiter = self._waiter = self.loop.create_future()
        return waiter

    def take_body(self) -> bytes:
        body = self.body
        data = body[0] if len(body) == 1 else b"".join(body)
        body.clear()
        self.buffered = 0
        if self.paused and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        return data

    def reusable(self) -> bool:
        return self.complete and self.keep_alive and not self.closed and self.error is None

    def close(self) -> None:
        self.disarm()
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def arm(self, deadline: float | None) -> None:
        """Fail the exchange with ``TimeoutError`` at ``deadline`` (loop time), unless disarmed."""
        if deadline is not None:
            self._timer = self.loop.call_at(deadline, self._time_out)

    def disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _time_out(self) -> None:
        self._timer = None
        self.error = TimeoutError("the upstream did not answer in time")
        self.close()
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():  # a cancelled waiter is done already
                if self.error is None:
                    waiter.set_result(None)
                else:
                    waiter.set_exception(self.error)

    def _fail(self, message: str) -> None:
        if not self.complete and self.error is None:  # the first cause wins (a timeout closes too)
            self.error = ConnectionBroken(message)
        self._wake()

    # ---- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.closed = True
            self._fail(f"the answer is not valid HTTP/1.1 ({exc})")
            if self.transport is not None:
                self.transport.close()
            return
        self._wake()

    def eof_received(self) -> bool:
        return False  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.headers_done and not self.complete and not self.framed and self.error is None:
            self._finish_body()  # a body delimited by the close itself
            self.complete = True
            self._wake()
            return
        self._fail("the server closed the connection" if exc is None else f"the connection failed ({exc})")

    # ---- httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        previous = self.headers.get(key)
        dict.__setitem__(self.headers, key, text if previous is None else f"{previous}, {text}")

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200:  # 103 Early Hints and the like: the real answer follows
            self.informational = True
            self.headers = Headers()
            return
        self.status = status
        self.keep_alive = self.parser.should_keep_alive()
        headers = self.headers
        self.framed = "content-length" in headers or "chunked" in headers.get("transfer-encoding", "")
        encoding = headers.get("content-encoding", "").strip().lower()
        if encoding in ("gzip", "x-gzip"):
            self.decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self.decoder = _Deflate()
        self.headers_done = True

    def on_body(self, data: bytes) -> None:
        if self.decoder is not None:
            try:
                data = self.decoder.decompress(data)
            except zlib.error as exc:
                self._fail(f"the answer's {self.headers.get('content-encoding')} body is corrupt ({exc})")
                return
        if data:
            self.body.append(data)
            self.buffered += len(data)
            if (
                self.streaming
                and self.buffered > _HIGH_WATER
                and not self.paused
                and self.transport is not None
            ):
                self.paused = True
                self.transport.pause_reading()

    def on_message_complete(self) -> None:
        if self.informational:
            self.informational = False
            return
        self._finish_body()
        self.complete = True
        if self.transport is not None and self.paused:
            self.paused = False
            self.transport.resume_reading()

    def _finish_body(self) -> None:
        if self.decoder is not None:
            tail = self.decoder.flush()
            if tail:
                self.body.append(tail)


class _Deflate:
    """``Content-Encoding: deflate`` is zlib-wrapped by the RFC, raw deflate from some servers."""

    __slots__ = ("_inner",)

    def __init__(self) -> None:
        self._inner: Any = None

    def decompress(self, data: bytes) -> bytes:
        if self._inner is None:
            raw = bool(data) and (data[0] & 0x0F) != 8  # a zlib header starts with CM = 8
            self._inner = zlib.decompressobj(-zlib.MAX_WBITS if raw else zlib.MAX_WBITS)
        return self._inner.decompress(data)  # type: ignore[no-any-return]

    def flush(self) -> bytes:
        return self._inner.flush() if self._inner is not None else b""
