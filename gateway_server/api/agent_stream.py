"""Streaming an agent protocol's events to the client (``/v1/messages``, ``/v1/responses``).

The same rules as ``api/streaming.py`` for the OpenAI chunk streams: the response starts only when
the first upstream batch is ready (a failure before it answers its normal error status), every batch
is written as it arrives, a failure after the first byte becomes the protocol's own error event
(never a silently truncated 200), and a client that goes away cancels the upstream request. Two
additions the agents need:

- a *translator* (one per stream, the protocol's state machine) turns each batch into the bytes of
  the protocol's events, and says what closes the stream (``finish``) or reports a failure (``fail``);
- ``ping`` events while the upstream is silent for :data:`PING_INTERVAL` seconds (long tool-call
  generations, reasoning models thinking), as Anthropic's API sends them, so that proxies and
  agents with idle timeouts keep the connection. The Responses API has no ping event; its
  translator returns no ping and none is sent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from time import perf_counter
from typing import Any, Protocol

from gateway_server.api.envelope import internal_error
from gateway_server.api.streaming import MODEL_HEADER, SSE_HEADERS
from gateway_server.errors import GatewayError
from gateway_server.observability import CURRENT, REQUEST_ID_HEADER
from gateway_server.registry import RouteEntry
from gateway_server.reliability import Target
from gateway_server.usage import StreamUsage, Usage

__all__ = ["PING_INTERVAL", "AgentCall", "Counted", "Translator", "charge", "native_usage", "send_stream"]

logger = logging.getLogger("gateway_server")

PING_INTERVAL = 10.0  # seconds of upstream silence before a ping event (Anthropic's streams)


class Translator(Protocol):
    def feed(self, batch: Any) -> bytes: ...

    def finish(self) -> bytes: ...

    def fail(self, exc: GatewayError) -> bytes: ...

    def ping(self) -> bytes | None: ...


@dataclass(slots=True)
class AgentCall:
    """One agent-protocol request as the dispatcher hands it over (already authorized, resolved
    and counted by the rate limit)."""

    state: Any
    entry: RouteEntry
    payload: dict[str, Any]
    model: str  # the name the caller sent (a route name or an alias), echoed in answers
    scope: dict[str, Any]
    receive: Any
    send: Any
    started: float
    account: tuple[str | None, Any] = (None, None)  # (gateway key name, admission ticket): who pays

    @property
    def extra_headers(self) -> list[tuple[bytes, bytes]]:
        """The admission's headers (rate-limit state), sent with the stream's head."""
        ticket = self.account[1]
        return list(ticket.headers) if ticket is not None else []


def native_usage(counts: Any, estimate: int) -> Usage:
    """What a passed-through answer used, from its own usage (Anthropic's or the Responses API's:
    ``input_tokens`` plus Anthropic's cached prompt tokens, ``output_tokens``); ``estimate`` prompt
    tokens when it reported none."""
    if not isinstance(counts, dict) or counts.get("input_tokens") is None:
        return Usage(estimate, 0, True)
    prompt = sum(
        counts.get(key) or 0
        for key in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    )
    return Usage(prompt, counts.get("output_tokens") or 0)


class Counted:
    """A translator of internal chat chunks whose chunks are also tallied (``usage.StreamUsage``)."""

    __slots__ = ("inner", "tally")

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.tally = StreamUsage()

    def feed(self, batch: list[dict[str, Any]]) -> bytes:
        for chunk in batch:
            self.tally(chunk)
        return self.inner.feed(batch)  # type: ignore[no-any-return]

    def finish(self) -> bytes:
        return self.inner.finish()  # type: ignore[no-any-return]

    def fail(self, exc: GatewayError) -> bytes:
        return self.inner.fail(exc)  # type: ignore[no-any-return]

    def ping(self) -> bytes | None:
        return self.inner.ping()  # type: ignore[no-any-return]


async def charge(
    call: AgentCall, served: Target, used: Usage, finish_reasons: list[str] | None = None
) -> None:
    """Record what the answer used (the invocation's observability record: token counters, the
    access line and, when tracing, the answer's finish reasons) and settle the admission ticket on
    it (governor.py), as the dispatcher does for the OpenAI-shaped paths."""
    record = CURRENT.get()
    if record is not None:
        record.served = served
        record.usage = used
        if finish_reasons and record.span is not None:
            record.finish_reasons = finish_reasons
    governor = call.state.governor
    if governor is not None:
        key_name, ticket = call.account
        pending = governor.charge(ticket, key_name, call.entry.name, served, used)
        if pending is not None:
            await pending


class _Liveness:
    """Watches for the client going away (cancels the serving task) and sends pings while quiet."""

    __slots__ = ("_tasks", "disconnected", "last_write")

    def __init__(self, call: AgentCall, ping: bytes | None, interval: float) -> None:
        self.disconnected = False
        self.last_write = perf_counter()
        task = asyncio.current_task()
        assert task is not None
        self._tasks = [asyncio.ensure_future(self._watch(call.receive, task))]
        if ping:
            self._tasks.append(asyncio.ensure_future(self._keep_alive(call.send, ping, interval)))

    async def _watch(self, receive: Any, task: asyncio.Task[Any]) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self.disconnected = True
        task.cancel()

    async def _keep_alive(self, send: Any, ping: bytes, interval: float) -> None:
        while True:
            await asyncio.sleep(max(0.0, self.last_write + interval - perf_counter()))
            if perf_counter() - self.last_write >= interval:
                self.last_write = perf_counter()
                await send({"type": "http.response.body", "body": ping, "more_body": True})

    def stop(self) -> None:
        for task in self._tasks:
            task.cancel()


async def send_stream(
    call: AgentCall,
    served: Target,
    first: Any,
    batches: AsyncGenerator[Any, None],
    translator: Translator,
    overhead: float,
    used: Callable[[], Usage],
) -> None:
    """Send the response head, then every batch through ``translator`` until the stream ends;
    then charge ``used()`` (finished, failed or abandoned: what went out is charged)."""
    send = call.send
    headers = [
        *SSE_HEADERS,
        *call.extra_headers,
        (MODEL_HEADER, served.header),
        (b"x-gateway-overhead-ms", f"{overhead * 1000:.3f}".encode()),
    ]
    record = CURRENT.get()
    if record is not None:  # the first event is ready: time to first token, as api/streaming.py
        record.served = served
        record.first_chunk = perf_counter() - call.started
        headers.append((REQUEST_ID_HEADER, record.request_id.encode()))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    live = _Liveness(call, translator.ping(), PING_INTERVAL)
    try:
        batch = first
        while batch is not None:
            body = translator.feed(batch)
            if body:
                live.last_write = perf_counter()
                await send({"type": "http.response.body", "body": body, "more_body": True})
            batch = await anext(batches, None)
        ending = translator.finish()
    except GatewayError as exc:
        ending = translator.fail(exc)
    except asyncio.CancelledError:
        if not live.disconnected:
            raise
        asyncio.current_task().uncancel()  # type: ignore[union-attr]
        return  # the client is gone: nothing to send; the upstream request is closed below
    except Exception:  # the process edge of a started response: log, tell the client, end
        logger.exception("agent stream failed after the first byte")
        ending = translator.fail(internal_error())
    finally:
        live.stop()
        try:
            await batches.aclose()
        finally:  # charged even if closing the upstream stream fails
            await charge(call, served, used())
    if not live.disconnected:
        await send({"type": "http.response.body", "body": ending, "more_body": False})
