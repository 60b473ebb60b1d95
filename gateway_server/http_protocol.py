"""uvicorn's httptools protocol, with the writes of one loop turn sent as one.

uvicorn writes a response's status line and headers when the app sends ``http.response.start``,
and the body when it sends ``http.response.body``: two ``send`` system calls (and two TCP
segments) for every plain answer. The gateway sends both messages back to back without waiting,
so the socket writes of one turn of the event loop can go out together: this transport wrapper
collects them and writes them once, at the end of that turn (``loop.call_soon``). Nothing waits
longer than the current turn, and ``close`` flushes first.

Measured with ``python -m bench.ab`` (docs/performance.md): one ``send`` a request fewer.
The wrapper relies only on the transport interface uvicorn uses; ``tests/server/test_http_protocol.py``
checks the wire bytes of plain, streamed, keep-alive and closing answers through a real server.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

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


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """Pass as uvicorn's ``http=``; everything but the transport's ``write`` is uvicorn's own."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(_CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]
