"""uvicorn's httptools protocol, with the writes of one loop turn sent as one, and bounds on callers.

uvicorn writes a response's status line and headers when the app sends ``http.response.start``,
and the body when it sends ``http.response.body``: two ``send`` system calls (and two TCP
segments) for every plain answer. The gateway sends both messages back to back without waiting,
so the socket writes of one turn of the event loop can go out together: this transport wrapper
collects them and writes them once, at the end of that turn (``loop.call_soon``). Nothing waits
longer than the current turn, and ``close`` flushes first.

Measured with ``python -m bench.ab`` (docs/performance.md): one ``send`` a request fewer.

Each request's cycle is a :class:`_Cycle`: uvicorn's, but its response head's names and values
are checked for forbidden bytes with one table lookup over all of them, where uvicorn runs two
regular-expression searches per header. The bytes written, the refusals and the
framing decisions are uvicorn's (``tests/server/test_http_protocol.py`` compares the two cycles).
The wrapper relies only on the transport interface uvicorn uses; ``tests/server/test_http_protocol.py``
checks the wire bytes of plain, streamed, keep-alive and closing answers through a real server.

The same subclass bounds what one caller can hold (``server_limits.ServerLimits``, options of
``gatewayctl serve``): the size and count of request headers (431), the time to send the headers
(then the connection closes) and the body (408), and the connections and requests in flight (503).
uvicorn's httptools protocol has none of the first three: httptools buffers a header line whole, however
long, and a connection that sends nothing is held forever. The checks cost nothing per request in
the common case, where a request's head (and small body) arrives in one read: the deadline timers
are armed only when a read ends in the middle of a request.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from uvicorn.protocols.http import httptools_impl
from uvicorn.protocols.http.httptools_impl import (
    HEADER_RE,
    HEADER_VALUE_RE,
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)

from gateway_server.errors import GatewayError, InvalidRequestError
from gateway_server.observability import REQUEST_ID_HEADER, request_id_of
from gateway_server.server_limits import DISCONNECT_HOOK, ServerLimits

__all__ = ["CoalescingHttpToolsProtocol"]

_FRAMING = frozenset((b"content-length", b"transfer-encoding", b"connection"))
# Per byte value, 0 where uvicorn's expressions refuse it in a header name / value, else 1: a head
# is checked with one ``bytes.translate`` and one byte search each (a C loop over the bytes, where
# the regular-expression engine costs some 20 times as much per byte on this build).
_NAME_BYTES = bytes(0 if HEADER_RE.match(bytes([byte])) else 1 for byte in range(256))
_VALUE_BYTES = bytes(0 if HEADER_VALUE_RE.match(bytes([byte])) else 1 for byte in range(256))


class _CoalescingTransport:
    """Forwards everything to the real transport; ``write`` is deferred to the end of the turn."""

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] | None = None

    def write(self, data: bytes) -> None:
        pending = self._pending
        if pending is None:
            self._pending = [data]
            self._loop.call_soon(self._flush)
        else:
            pending.append(data)

    def writelines(self, lines: Any) -> None:
        for data in lines:
            self.write(data)

    def _flush(self) -> None:
        pending, self._pending = self._pending, None
        if pending and not self._transport.is_closing():
            self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def get_write_buffer_size(self) -> int:
        pending = sum(len(data) for data in self._pending) if self._pending else 0
        return pending + self._transport.get_write_buffer_size()

    def close(self) -> None:
        self._flush()
        self._transport.close()

    # What uvicorn calls per request, forwarded without the __getattr__ detour.
    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def __getattr__(self, name: str) -> Any:  # abort, is_reading, set_write_buffer_limits, ...
        return getattr(self._transport, name)


class _HeadTooLarge(Exception):
    """Raised inside a parser callback to stop parsing a request whose head is over the limit."""


def _error_response(error: GatewayError) -> bytes:
    """A whole closing HTTP response carrying ``error``'s envelope (written without the ASGI app),
    with a fresh request id (no request was read whole, so there is no caller's id to repeat)."""
    request_id = request_id_of([])
    payload = error.to_payload()
    payload["error"]["request_id"] = request_id
    body = orjson.dumps(payload)
    head = [STATUS_LINE[error.status_code], b"x-request-id: %s\r\n" % request_id.encode()]
    for name, value in error.headers().items():
        head.append(f"{name.lower()}: {value}\r\n".encode("latin-1"))
    head.append(
        b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % len(body)
    )
    return b"".join(head) + body


async def _overloaded(scope: Any, receive: Any, send: Any) -> None:
    """The ASGI answer to a request beyond the concurrency cap (uvicorn's own is plain text)."""
    error = GatewayError("The gateway is at its concurrency limit; retry shortly.", status_code=503)
    error.retry_after = 1
    request_id = request_id_of(scope["headers"])
    payload = error.to_payload()
    payload["error"]["request_id"] = request_id
    body = orjson.dumps(payload)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", b"1"),
        (b"connection", b"close"),
        (REQUEST_ID_HEADER, request_id.encode()),
    ]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _Cycle(RequestResponseCycle):
    """uvicorn's request/response cycle, but for how it writes a response head: the names and
    values are checked for the bytes uvicorn refuses by one table lookup over all of them, where
    uvicorn runs two regular-expression searches per header (some 2,300 instructions each, 20-30 k
    a response, counted). The same names and values are refused (``RuntimeError``), the same
    framing headers honoured; every other message is uvicorn's own ``send``.

    Made as this class from the start (:meth:`CoalescingHttpToolsProtocol.on_headers_complete`):
    swapping an existing cycle's class, or giving it a ``send`` of its own, defeats the
    interpreter's attribute caches in every uvicorn method that touches it (about 8 k instructions
    a request, counted)."""

    async def send(self, message: Any) -> None:
        if (
            self.response_started
            or self.disconnected
            or self.flow.write_paused
            or self.access_log
            or message["type"] != "http.response.start"
        ):
            await super().send(message)
            return
        self.response_started = True
        self.waiting_for_100_continue = False
        status = message["status"]
        content = [STATUS_LINE[status]]
        closes = False
        for name, value in (*self.default_headers, *message.get("headers", ())):
            name = name.lower()
            if name in _FRAMING:
                closes = _framing(self, name, value) or closes
            content += (name, b": ", value, b"\r\n")
        # content: the status line, then per header its name, ": ", its value and CRLF
        if 0 in b"".join(content[1::4]).translate(_NAME_BYTES):
            raise RuntimeError("Invalid HTTP header name.")
        if 0 in b"".join(content[3::4]).translate(_VALUE_BYTES):
            raise RuntimeError("Invalid HTTP header value.")
        if not self.keep_alive and not closes:
            content.append(b"connection: close\r\n")
        if self.chunked_encoding is None and self.scope["method"] != "HEAD" and status not in (204, 304):
            self.chunked_encoding = True  # neither a length nor an encoding: chunks
            content.append(b"transfer-encoding: chunked\r\n")
        content.append(b"\r\n")
        self.transport.write(b"".join(content))


def _framing(cycle: RequestResponseCycle, name: bytes, value: bytes) -> bool:
    """Apply a framing header; True when it closes the connection after this response."""
    if name == b"content-length":
        if cycle.chunked_encoding is None:
            cycle.expected_content_length = int(value.decode())
            cycle.chunked_encoding = False
    elif name == b"transfer-encoding":
        if value.lower() == b"chunked":
            cycle.expected_content_length = 0
            cycle.chunked_encoding = True
    elif b"close" in [token.strip().lower() for token in value.split(b",")]:
        cycle.keep_alive = False
        return True
    return False


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """Pass as uvicorn's ``http=``; everything but the transport's ``write`` and the caller bounds
    (``ServerLimits``, from ``config.gateway_limits``) is uvicorn's own."""

    def __init__(self, config: Any, server_state: Any, app_state: Any, _loop: Any = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        limits: ServerLimits = getattr(config, "gateway_limits", None) or ServerLimits()
        self._max_header_bytes = limits.max_header_bytes
        self._max_headers = limits.max_headers
        self._header_timeout = limits.header_timeout
        self._body_timeout = limits.body_timeout
        self.timeout_keep_alive = limits.keep_alive_timeout  # type: ignore[assignment]
        self._concurrency = limits.concurrency()
        self.limit_concurrency = None  # uvicorn's check answers plain text; ours, the envelope
        self._head_bytes = 0  # bytes read since the current request's head began
        self._reading_head = True  # False from the end of a request's headers to the end of its body
        self._head_error: GatewayError | None = None
        self._deadline: asyncio.TimerHandle | None = None  # the header or body timer, when armed

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(_CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]
        if len(self.connections) > self._concurrency:  # ``connections`` includes this one
            error = GatewayError("The gateway is at its connection limit; retry shortly.", status_code=503)
            error.retry_after = 1
            self.transport.write(_error_response(error))
            self.transport.close()
            return
        # A connection that never sends a whole head (or nothing at all) is closed after the timeout.
        self._deadline = self.loop.call_later(self._header_timeout, self._head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        cycle = self.cycle
        super().connection_lost(exc)
        if cycle is not None and not cycle.response_complete:
            hook = cycle.scope.pop(DISCONNECT_HOOK, None)  # type: ignore[misc]
            if hook is not None:
                hook()

    def data_received(self, data: bytes) -> None:
        if self._reading_head:
            self._head_bytes += len(data)
        super().data_received(data)
        # A whole request in one read (the common case) ends with the head reset to 0 bytes: then
        # nothing below applies, and nothing else is looked at.
        if self._reading_head:
            if not self._head_bytes or (
                self._deadline is not None and self._head_bytes <= self._max_header_bytes
            ):
                return
            if self.parser is None or self.transport.is_closing():
                return
            if self._head_bytes > self._max_header_bytes:
                self._head_error = _head_too_large(self._max_header_bytes)
                self.send_400_response("")
            else:
                self._deadline = self.loop.call_later(self._header_timeout, self._head_timed_out)
        elif self._deadline is None and self.cycle is not None and self.cycle.more_body:
            if self.parser is None or self.transport.is_closing():
                return
            self._deadline = self.loop.call_later(self._body_timeout, self._body_timed_out)

    def on_headers_complete(self) -> None:
        self._reading_head = False
        self._head_bytes = 0
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        if len(self.headers) > self._max_headers:  # counted once here, not per header line
            self._head_error = InvalidRequestError(
                f"The request has more than {self._max_headers} header lines, the most this gateway accepts.",
                status_code=431,
            )
            raise _HeadTooLarge  # the parser fails, and send_400_response answers the 431
        if len(self.tasks) >= self._concurrency:
            app, self.app = self.app, _overloaded
            try:
                self._start_cycle()
            finally:
                self.app = app
        else:
            self._start_cycle()

    def _start_cycle(self) -> None:
        """uvicorn's ``on_headers_complete``, which makes the request's cycle as a :class:`_Cycle`:
        uvicorn names the class in its module, so the name points at ours while it runs (on this
        thread; an in-process uvicorn on another thread that makes a cycle meanwhile gets one too,
        which writes the same bytes)."""
        httptools_impl.RequestResponseCycle = _Cycle  # type: ignore[misc]
        try:
            super().on_headers_complete()
        finally:
            httptools_impl.RequestResponseCycle = RequestResponseCycle  # type: ignore[misc]

    def on_message_complete(self) -> None:
        self._reading_head = True
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        error, self._head_error = self._head_error, None
        if error is None:  # a malformed request: the envelope too (uvicorn's own answer is plain text)
            error = InvalidRequestError(msg or "Invalid HTTP request received.")
        self._cancel_deadline()
        self.transport.write(_error_response(error))
        self.transport.close()

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _head_timed_out(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            return  # an answer is in progress; the next request's head is bounded again after it
        if self._head_bytes:
            error = InvalidRequestError(
                f"The request headers did not arrive within {self._header_timeout:g} seconds.",
                status_code=408,
            )
            self.transport.write(_error_response(error))
        self.transport.close()

    def _body_timed_out(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_started:
            error = InvalidRequestError(
                f"The request body did not arrive within {self._body_timeout:g} seconds.", status_code=408
            )
            self.transport.write(_error_response(error))
        self.transport.close()


def _head_too_large(limit: int) -> GatewayError:
    return InvalidRequestError(
        f"The request line and headers are larger than {limit} bytes, the most this gateway accepts.",
        status_code=431,
    )
