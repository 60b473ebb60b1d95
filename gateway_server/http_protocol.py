"""uvicorn's httptools protocol, with the writes of one loop turn sent as one, and bounds on callers.

uvicorn writes a response's status line and headers when the app sends ``http.response.start``,
and the body when it sends ``http.response.body``: two ``send`` system calls (and two TCP
segments) for every plain answer. The gateway sends both messages back to back without waiting,
so the socket writes of one turn of the event loop can go out together: this transport wrapper
collects them and writes them once, at the end of that turn (``loop.call_soon``). Nothing waits
longer than the current turn, and ``close`` flushes first.

Measured with ``python -m bench.ab`` (docs/performance.md): one ``send`` a request fewer.
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
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from gateway_server.errors import GatewayError, InvalidRequestError
from gateway_server.observability import REQUEST_ID_HEADER, request_id_of
from gateway_server.server_limits import DISCONNECT_HOOK, ServerLimits

__all__ = ["CoalescingHttpToolsProtocol"]


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
                super().on_headers_complete()
            finally:
                self.app = app
            return
        super().on_headers_complete()

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
