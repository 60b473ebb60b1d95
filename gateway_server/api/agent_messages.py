"""``POST /v1/messages`` and ``POST /v1/messages/count_tokens``: Anthropic's Messages API on any
chat route, served by the invocation dispatcher (``api/invocations.py``: auth, route and alias
lookup, rate limits, metrics) and the route's reliability plan (deadline, retries, fallbacks,
breakers). Per model of the plan: an Anthropic model gets the request natively
(``protocols/native.py``); any other model gets it translated to the internal chat request
(``protocols/messages.py``) and its answer translated back (``protocols/messages_stream.py`` for
streams). So a route that falls back from Claude to another vendor serves both ways in one call.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator
from time import perf_counter
from typing import Any

import orjson

from gateway_server.api.agent_stream import AgentCall, Counted, charge, native_usage, send_stream
from gateway_server.errors import InvalidRequestError
from gateway_server.protocols import messages
from gateway_server.protocols.messages_stream import PING, MessagesStream
from gateway_server.protocols.native import NativeEvents, anthropic_native
from gateway_server.reliability import Target, call_with, open_stream_with
from gateway_server.routes import RouteType
from gateway_server.upstream.clients import Upstreams
from gateway_server.usage import Usage, usage_of

__all__ = ["CountTokensProtocol", "MessagesProtocol"]

CHAT = RouteType.CHAT
_TERMINAL = frozenset({"message_stop"})


def _is_anthropic(target: Target) -> bool:
    return target.adapter.name == "anthropic"


class _Translation:
    """The internal chat request of one call, built on first use (only non-Anthropic models need it)."""

    __slots__ = ("_chat", "payload")

    def __init__(self, payload: dict[str, Any]) -> None:
        self.payload = payload
        self._chat: dict[str, Any] | None = None

    @property
    def chat(self) -> dict[str, Any]:
        if self._chat is None:
            self._chat = messages.to_chat_request(self.payload)
        return self._chat


class MessagesProtocol:
    """``POST /v1/messages``."""

    error_body = staticmethod(messages.error_body)

    async def invoke(self, call: AgentCall) -> tuple[bytes, Target, float] | float:
        """Answer one call: ``(body, the model that served, upstream seconds)``, or, when it was
        streamed (already sent), the gateway's own seconds up to the first event."""
        payload = messages.validate_request(call.payload)
        translation = _Translation(payload)
        if payload.get("stream"):
            return await self._stream(call, translation)
        upstreams: Upstreams = call.state.upstream
        headers, model = call.scope["headers"], call.model
        fallback_id = uuid.uuid4().hex

        async def run(target: Target, remaining: float) -> tuple[dict[str, Any], Usage]:
            adapter, upstream = target.adapter, upstreams.client(target.transport)
            if _is_anthropic(target):
                body = await upstream.call(anthropic_native(adapter, headers), CHAT, payload, remaining)
                return body, native_usage(body.get("usage"), messages.estimate_input_tokens(payload))
            result = await upstream.call(adapter, CHAT, translation.chat, remaining)
            return messages.message_from_chat(result, model, fallback_id), usage_of(result, translation.chat)

        upstream_started = perf_counter()
        try:
            (message, used), served = await call_with(call.entry.plan, run)
        finally:
            upstream_seconds = perf_counter() - upstream_started
        stop = message.get("stop_reason")  # the trace's gen_ai.response.finish_reasons
        await charge(call, served, used, [stop] if stop else None)  # limits, budgets, usage table
        return orjson.dumps(message), served, upstream_seconds

    async def _stream(self, call: AgentCall, translation: _Translation) -> float:
        payload = translation.payload
        upstreams: Upstreams = call.state.upstream
        headers, timeout = call.scope["headers"], call.entry.plan.timeout

        def opener(target: Target) -> AsyncGenerator[Any, None]:
            adapter, upstream = target.adapter, upstreams.client(target.transport)
            if _is_anthropic(target):
                return upstream.stream_batches(anthropic_native(adapter, headers), CHAT, payload, timeout)
            return upstream.stream_batches(adapter, CHAT, translation.chat, timeout)

        upstream_started = perf_counter()
        served, first, batches = await open_stream_with(call.entry.plan, opener)
        upstream_seconds = perf_counter() - upstream_started
        translator: Any
        estimate = messages.estimate_input_tokens(payload)
        if _is_anthropic(served):
            native = translator = NativeEvents(_TERMINAL, MessagesStream.fail, PING)

            def used() -> Usage:
                return native_usage(native.usage, estimate)

        else:
            counted = translator = Counted(MessagesStream(f"msg_{uuid.uuid4().hex}", call.model, estimate))

            def used() -> Usage:
                return counted.tally.result(translation.chat)

        overhead = perf_counter() - call.started - upstream_seconds
        await send_stream(call, served, first, batches, translator, overhead, used)
        return overhead


class CountTokensProtocol:
    """``POST /v1/messages/count_tokens``: Anthropic's own count on Anthropic routes, the documented
    estimate (``messages.estimate_input_tokens``) on the others."""

    error_body = staticmethod(messages.error_body)

    async def invoke(self, call: AgentCall) -> tuple[bytes, Target, float] | float:
        payload = call.payload
        if not isinstance(payload.get("messages"), list) or not payload["messages"]:
            raise InvalidRequestError(
                "messages: a non-empty list of {role, content} is required", param="messages"
            )
        upstreams: Upstreams = call.state.upstream
        headers = call.scope["headers"]

        async def run(target: Target, remaining: float) -> dict[str, Any]:
            if _is_anthropic(target):
                native = anthropic_native(target.adapter, headers, count_tokens=True)
                return await upstreams.client(target.transport).call(native, CHAT, payload, remaining)
            return {"input_tokens": messages.estimate_input_tokens(payload)}

        upstream_started = perf_counter()
        result, served = await call_with(call.entry.plan, run)
        await charge(call, served, Usage())  # counting generates nothing: a call, no tokens
        return orjson.dumps(result), served, perf_counter() - upstream_started
