"""Streaming answers (``"stream": true``): ``text/event-stream``, one ``data: <chunk>`` per event,
ending with ``data: [DONE]``.

Rules kept here once, for every provider and path:

- the response starts only when the first chunk is ready, so a failure before the first byte
  answers its normal error status, and ``X-Gateway-Overhead-Ms`` covers the time up to that chunk;
- every chunk is forwarded as it arrives (no buffering), with one ``id`` and ``created`` for the
  whole stream and ``role`` on the first delta of each choice;
- a failure after the first byte is sent as a ``data: {"error": {...}}`` event, then the stream
  ends without ``[DONE]``: never a silently truncated 200;
- a client that goes away cancels the upstream request;
- what the stream used (its final chunk's ``usage``, else the estimate of usage.StreamUsage) is
  recorded and settled once it is over, however it ended: a client that left pays for what it got.

Every path streams the OpenAI chunk shapes: the seed-era API never defined a streaming shape.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncGenerator, Iterable
from time import perf_counter
from typing import Any

import orjson

from gateway_server.api.envelope import internal_error
from gateway_server.errors import GatewayError
from gateway_server.observability import CURRENT, REQUEST_ID_HEADER
from gateway_server.registry import RouteEntry
from gateway_server.reliability import open_stream
from gateway_server.routes import RouteType
from gateway_server.usage import StreamUsage

__all__ = ["MODEL_HEADER", "stream_response"]

logger = logging.getLogger("gateway_server")

SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),  # tell nginx-style proxies not to buffer either
]
DONE = b"data: [DONE]\n\n"
MODEL_HEADER = b"x-gateway-model"  # <provider>/<model> that served (a fallback, a split member)


class _ChunkDecorator:
    """Fills what the standard requires on every chunk of one stream (and watches its usage)."""

    __slots__ = ("created", "finish_reasons", "id", "model", "route_type", "seen_roles", "tally")

    def __init__(self, entry: RouteEntry, model: str | None = None) -> None:
        self.finish_reasons: list[str] = []  # for the trace
        self.route_type = entry.route_type
        prefix = "chatcmpl-" if entry.route_type is RouteType.CHAT else "cmpl-"
        self.id = prefix + uuid.uuid4().hex
        self.created = int(time.time())
        self.model = model if model is not None else entry.adapter.model_name
        self.seen_roles: set[int] = set()
        self.tally = StreamUsage()

    def __call__(self, chunk: dict[str, Any]) -> bytes:
        self.tally(chunk)
        chunk["id"] = chunk.get("id") or self.id
        chunk["created"] = chunk.get("created") or self.created
        if not chunk.get("model"):
            chunk["model"] = self.model
        chat = self.route_type is RouteType.CHAT
        for choice in chunk.get("choices") or ():
            if choice.get("finish_reason"):
                self.finish_reasons.append(choice["finish_reason"])
            index = choice.get("index", 0)
            if chat and index not in self.seen_roles:
                self.seen_roles.add(index)
                delta = choice.setdefault("delta", {})
                delta.setdefault("role", "assistant")
        return b"data: " + orjson.dumps(chunk) + b"\n\n"


def _error_event(exc: GatewayError, request_id: str | None) -> bytes:
    """The event that ends a stream which failed after its first byte: the envelope's ``error``,
    with the request id (the status and headers went out already; this is all the caller gets)."""
    error = exc.to_payload()["error"]
    if request_id is not None:
        error["request_id"] = request_id
    return b"data: " + orjson.dumps({"error": error}) + b"\n\n"


async def stream_response(
    state: Any,
    entry: RouteEntry,
    payload: dict[str, Any],
    receive: Any,
    send: Any,
    started: float,
    account: tuple[str | None, Any] = (None, None),
) -> float:
    """Serve one streaming invocation; return the gateway's own seconds up to the first chunk.

    Raises GatewayError only before the response has started. Retries and fallbacks apply to the
    opening only (``reliability.open_stream``): once a chunk is ready it goes to the client.
    ``account`` is ``(key name, admission ticket)``: who is charged for the stream, and what
    admission reserved for it (governor.py; its limit headers go out with the stream's)."""
    ticket = account[1]
    extra_headers: Iterable[tuple[bytes, bytes]] = ticket.headers if ticket is not None else ()
    upstream_started = perf_counter()
    # an error here is still a normal error response
    served, first, chunks = await open_stream(state.upstream, entry.plan, entry.route_type, payload)
    adapter = served.adapter
    decorate = _ChunkDecorator(entry, adapter.model_name)
    upstream_seconds = perf_counter() - upstream_started
    overhead_ms = (perf_counter() - started - upstream_seconds) * 1000
    record = CURRENT.get()
    if record is not None:
        record.served = served
        record.first_chunk = perf_counter() - started
        extra_headers = [*extra_headers, (REQUEST_ID_HEADER, record.request_id.encode())]
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                *SSE_HEADERS,
                *extra_headers,
                (MODEL_HEADER, served.header),
                (b"x-gateway-overhead-ms", f"{overhead_ms:.3f}".encode()),
            ],
        }
    )
    ending: bytes | None = None
    try:
        ending = await _forward(
            first, chunks, decorate, receive, send, record.request_id if record is not None else None
        )
    finally:  # finished, failed or abandoned: what went out is charged
        used = decorate.tally.result(payload)
        if record is not None:
            record.usage = used
            record.response_model = decorate.model
            record.finish_reasons = decorate.finish_reasons
        governor = state.governor
        if governor is not None:
            pending = governor.charge(account[1], account[0], entry.name, served, used)
            if pending is not None:
                await pending
    # The last event goes out only once the stream is charged: a client that sends its next request
    # as soon as it reads [DONE] must find the window and the budget already settled.
    if ending is not None:
        await send({"type": "http.response.body", "body": ending, "more_body": False})
    return overhead_ms / 1000


async def _forward(
    first: list[dict[str, Any]] | None,
    batches: AsyncGenerator[list[dict[str, Any]], None],
    decorate: _ChunkDecorator,
    receive: Any,
    send: Any,
    request_id: str | None,
) -> bytes | None:
    """Send the chunks; return the event that ends the stream ([DONE] or an error event), or None
    when the client has gone. The caller sends it, after charging what went out."""
    task = asyncio.current_task()
    assert task is not None
    disconnected = False

    async def watch_disconnect() -> None:
        nonlocal disconnected
        while (await receive())["type"] != "http.disconnect":
            pass
        disconnected = True
        task.cancel()

    watcher = asyncio.ensure_future(watch_disconnect())
    ending = DONE
    try:
        batch = first
        while batch is not None:
            body = decorate(batch[0]) if len(batch) == 1 else b"".join(map(decorate, batch))
            await send({"type": "http.response.body", "body": body, "more_body": True})
            batch = await anext(batches, None)
    except GatewayError as exc:
        ending = _error_event(exc, request_id)
    except asyncio.CancelledError:
        if not disconnected:
            raise
        task.uncancel()
        return None  # the client is gone: nothing to send; the upstream request is closed below
    except Exception:  # the process edge of a started response: log, tell the client, end
        logger.exception("stream failed after the first byte")
        ending = _error_event(internal_error(), request_id)
    finally:
        watcher.cancel()
        await batches.aclose()
    return None if disconnected else ending
