"""Raw ASGI plumbing for the fake upstreams: body reading, disconnect-aware waits, dropping a connection.

``drop`` reaches the connection's transport through uvicorn's ``send`` (a bound method of the
request-response cycle, for both its h11 and httptools protocols), closes it, and waits for uvicorn to
notice, so uvicorn neither sends a 500 nor logs an error. Under a server without that attribute it
raises :class:`ConnectionDroppedError` instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

__all__ = ["ConnectionDroppedError", "drop", "encode_headers", "lifespan", "pause", "read_body"]


class ConnectionDroppedError(Exception):
    """Raised by a drop fault when the server's transport cannot be reached to close it."""


def encode_headers(headers: Mapping[str, str]) -> list[tuple[bytes, bytes]]:
    return [(name.lower().encode("latin-1"), str(value).encode("latin-1")) for name, value in headers.items()]


async def read_body(receive: Any) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def pause(receive: Any, seconds: float) -> bool:
    """Wait ``seconds``; return ``False`` at once if the client disconnects meanwhile."""
    waiter = asyncio.ensure_future(receive())
    try:
        done, _ = await asyncio.wait({waiter}, timeout=seconds)
    finally:
        if not waiter.done():
            waiter.cancel()
    return not done  # after the body, the only message left to receive is the disconnect


async def drop(send: Any, receive: Any) -> None:
    """Close the connection now (what is already written is flushed first), then wait for it to go."""
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is None:
        raise ConnectionDroppedError("fault: connection dropped (no transport to close)")
    transport.close()
    while (await receive())["type"] != "http.disconnect":
        pass


async def lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
