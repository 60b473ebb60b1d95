"""One upstream HTTP/1.1 connection: an asyncio protocol fed to the httptools response parser.

It reads one answer at a time for :mod:`gateway_server.upstream.pool`, and bounds what an upstream
can make it hold: :data:`MAX_HEADER_BYTES` and :data:`MAX_HEADERS` of head, ``max_body`` bytes of
body after decompression (one compressed piece never inflates past it either, so a gzip bomb stops
at the limit). A body framed by the connection's close is complete only when the server closed
cleanly: a reset, or a compressed body cut before its end, fails the exchange. The errors here
(``ConnectionBroken``, ``TimeoutError``) are what the pool's callers see.
"""

from __future__ import annotations

import asyncio
import zlib
from typing import Any

import httptools

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_HEADERS",
    "MAX_HEADER_BYTES",
    "ConnectError",
    "ConnectionBroken",
    "Headers",
    "UnsendableRequest",
]

MAX_BODY_BYTES = 64 * 1024 * 1024  # an answer's body after decompression
MAX_HEADER_BYTES = 64 * 1024  # an answer's status line and headers
MAX_HEADERS = 100  # an answer's header lines
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


def _too_large(limit: int) -> str:
    return f"the answer's body is larger than {limit} bytes (after decompression), the most the gateway reads"


class _Connection(asyncio.Protocol):
    """One socket, one exchange at a time; httptools calls the ``on_*`` methods as bytes arrive."""

    def __init__(self, loop: asyncio.AbstractEventLoop, max_body: int = MAX_BODY_BYTES) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.key: tuple[bool, str, int] = (False, "", 0)
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.expires = 0.0  # monotonic time after which an idle connection is not reused
        self.max_body = max_body
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
        self.total = 0  # body bytes after decompression
        self.head_bytes = 0
        self.header_count = 0
        self.header_bytes = 0
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

    def abort(self, message: str) -> None:
        """Fail the exchange in flight (if any) with ``message`` and close."""
        self._fail(message)
        self.close()

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
        if not self.headers_done:
            self.head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(f"the answer is not valid HTTP/1.1 ({exc})")
            self.close()
            return
        if self.error is not None:  # over a limit (the body) or corrupt: stop reading at once
            self.close()
        elif not self.headers_done and self.head_bytes > MAX_HEADER_BYTES:
            self._fail(
                f"the answer's headers are larger than {MAX_HEADER_BYTES} bytes, the most the gateway reads"
            )
            self.close()
        self._wake()

    def eof_received(self) -> bool:
        return False  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.disarm()
        # A body delimited by the close itself is complete only on a clean close: a reset (exc) cuts it.
        if self.headers_done and not self.complete and not self.framed and self.error is None and exc is None:
            self._finish_body()
            if self.error is None:
                self.complete = True
            self._wake()
            return
        if exc is not None and self.headers_done and not self.framed and not self.complete:
            self._fail(f"the connection was reset before the answer was complete ({exc})")
            return
        self._fail("the server closed the connection" if exc is None else f"the connection failed ({exc})")

    # ---- httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.headers_done:
            return  # a chunked body's trailer: not part of the answer's headers (h11 agrees)
        self.header_count += 1
        if self.header_count > MAX_HEADERS:
            self._fail(f"the answer has more than {MAX_HEADERS} header lines, the most the gateway reads")
            raise ConnectionBroken("too many headers")  # stops the parser
        self.header_bytes += len(name) + len(value)
        if self.header_bytes > MAX_HEADER_BYTES:
            self._fail(
                f"the answer's headers are larger than {MAX_HEADER_BYTES} bytes, the most the gateway reads"
            )
            raise ConnectionBroken("headers too large")  # stops the parser
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1").strip(" \t")  # optional whitespace is not part of the value
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
        if self.error is not None:
            return
        if self.decoder is not None:
            # Never more than the limit from one piece: a gzip bomb stops inflating here.
            budget = self.max_body if self.streaming else self.max_body - self.total
            try:
                data = self.decoder.decompress(data, budget + 1)
            except zlib.error as exc:
                self._fail(f"the answer's {self.headers.get('content-encoding')} body is corrupt ({exc})")
                return
            if len(data) > budget:
                self._fail(_too_large(self.max_body))
                return
        self.total += len(data)
        if not self.streaming and self.total > self.max_body:
            self._fail(_too_large(self.max_body))
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
        if self.error is not None:
            return  # a failed body is never complete
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
            if not self.decoder.eof:  # the compressed stream was cut short
                self._fail(f"the answer's {self.headers.get('content-encoding')} body ended before its end")


class _Deflate:
    """``Content-Encoding: deflate`` is zlib-wrapped by the RFC, raw deflate from some servers."""

    __slots__ = ("_inner",)

    def __init__(self) -> None:
        self._inner: Any = None

    @property
    def eof(self) -> bool:
        return self._inner is None or bool(self._inner.eof)

    def decompress(self, data: bytes, max_length: int = 0) -> bytes:
        if self._inner is None:
            raw = bool(data) and (data[0] & 0x0F) != 8  # a zlib header starts with CM = 8
            self._inner = zlib.decompressobj(-zlib.MAX_WBITS if raw else zlib.MAX_WBITS)
        return self._inner.decompress(data, max_length)  # type: ignore[no-any-return]

    def flush(self) -> bytes:
        return self._inner.flush() if self._inner is not None else b""
