"""Reading a gateway's answers: JSON bodies and ``text/event-stream`` chunk streams.

A streamed query answers ``data: <chunk json>`` events ending with ``data: [DONE]``; a failure
after the stream started arrives as a ``data: {"error": {...}}`` event and is raised as the same
typed error a non-2xx answer would give. Each event is one ``data:`` line (what the gateway sends).
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator
from typing import Any, Protocol

import httpx

from gateway_server.errors import GatewayError
from gatewayctl._envelope import error_from_payload

__all__ = ["AsyncChunkStream", "ChunkStream", "json_body"]


def json_body(response: httpx.Response) -> Any:
    """The decoded JSON body; a typed error (not a ValueError) when it is not JSON."""
    try:
        return response.json()
    except ValueError as exc:
        raise GatewayError(
            f"The gateway answered HTTP {response.status_code} with a body that is not JSON: "
            f"{response.text[:200]!r}",
            status_code=response.status_code,
        ) from exc


_DONE = object()


def _event_data(line: str) -> Any:
    """One SSE line: the chunk of a ``data:`` line, ``_DONE`` at ``[DONE]``, None for anything else.

    An ``{"error": {...}}`` event (a failure after the stream started) is raised as its typed error.
    """
    if not line.startswith("data:"):
        return None
    data = line[len("data:") :].strip()
    if data == "[DONE]":
        return _DONE
    try:
        chunk = json.loads(data)
    except ValueError as exc:
        raise GatewayError(f"The gateway sent a stream event that is not JSON: {data[:200]!r}") from exc
    if isinstance(chunk, dict) and isinstance(chunk.get("error"), dict):
        code = chunk["error"].get("code")
        raise error_from_payload(code if isinstance(code, int) else 502, chunk)
    return chunk


def _is_event_stream(response: httpx.Response) -> bool:
    return response.headers.get("content-type", "").startswith("text/event-stream")


def _chunks(response: httpx.Response) -> Generator[dict[str, Any], None, None]:
    if not _is_event_stream(response):
        response.read()
        yield json_body(response)
        return
    for line in response.iter_lines():
        chunk = _event_data(line)
        if chunk is _DONE:
            return
        if chunk is not None:
            yield chunk


async def _achunks(response: httpx.Response) -> AsyncGenerator[dict[str, Any], None]:
    if not _is_event_stream(response):
        await response.aread()
        yield json_body(response)
        return
    async for line in response.aiter_lines():
        chunk = _event_data(line)
        if chunk is _DONE:
            return
        if chunk is not None:
            yield chunk


class _Closeable(Protocol):
    def close(self) -> None: ...


class ChunkStream(Iterator[dict[str, Any]]):
    """The chunks of a streamed query, as dicts, in arrival order.

    The connection is closed when the stream ends, when iteration raises, on :meth:`close`, on
    leaving a ``with`` block, or when the object is dropped (e.g. after ``break``). A gateway that
    answers a streamed query with plain JSON yields that one body as the only chunk.
    """

    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self._also_close: list[_Closeable] = []
        self._chunks = _chunks(response)  # holds the response, not self: dropping self closes it

    def close_with(self, resource: _Closeable) -> None:
        """Also close ``resource`` when this stream closes (e.g. a client made just for this stream)."""
        self._also_close.append(resource)

    def __iter__(self) -> ChunkStream:
        return self

    def __next__(self) -> dict[str, Any]:
        try:
            return next(self._chunks)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self._chunks.close()
        self._response.close()
        while self._also_close:
            self._also_close.pop().close()

    def __enter__(self) -> ChunkStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        if hasattr(self, "_chunks"):
            self.close()


class AsyncChunkStream(AsyncIterator[dict[str, Any]]):
    """Async twin of :class:`ChunkStream`; use ``async with`` or :meth:`aclose` to close early."""

    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self._chunks = _achunks(response)

    def __aiter__(self) -> AsyncChunkStream:
        return self

    async def __anext__(self) -> dict[str, Any]:
        try:
            return await anext(self._chunks)
        except BaseException:
            await self.aclose()
            raise

    async def aclose(self) -> None:
        await self._chunks.aclose()
        await self._response.aclose()

    async def __aenter__(self) -> AsyncChunkStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
