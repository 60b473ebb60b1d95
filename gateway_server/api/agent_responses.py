"""``POST /v1/responses``, ``GET /v1/responses/{id}`` and ``DELETE /v1/responses/{id}``: OpenAI's
Responses API on any chat route, through the invocation dispatcher and the route's reliability
plan like every other path. Per model of the plan: an OpenAI model (``openai_api_type: openai``)
gets the request natively (``protocols/native.py``); any other model gets it translated to the
internal chat request (``protocols/responses.py``) and back (``protocols/responses_stream.py``).

``previous_response_id`` is resolved by the gateway from its own store (``protocols/response_store.py``):
the stored conversation and the earlier answer are put before the new input, so a follow-up works on
every provider. An id the gateway never stored is left to an OpenAI route's upstream (which may
know it) and is a 404 elsewhere.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncGenerator
from time import perf_counter
from typing import Any

import orjson

from gateway_server.api.agent_stream import AgentCall, Counted, charge, native_usage, send_stream
from gateway_server.errors import ResponseNotFoundError, SharedStateUnavailableError
from gateway_server.protocols import responses
from gateway_server.protocols.native import NativeEvents, openai_native
from gateway_server.protocols.response_store import ResponseStore
from gateway_server.protocols.responses_stream import ResponsesStream
from gateway_server.reliability import Target, call_with, open_stream_with
from gateway_server.routes import RouteType
from gateway_server.upstream.clients import Upstreams
from gateway_server.usage import Usage, estimate_prompt_tokens, usage_of

__all__ = ["ResponsesProtocol", "response_store"]

logger = logging.getLogger("gateway_server")

CHAT = RouteType.CHAT
_TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})
_ITEM_NOISE = ("id", "status")  # an output item fed back as input: OpenAI would look these ids up


def response_store(state: Any) -> ResponseStore:
    store = state.extras.get("responses")
    if store is None:
        store = state.extras["responses"] = ResponseStore(state.shared)
    return store  # type: ignore[no-any-return]


def _is_openai(target: Target) -> bool:
    adapter = target.adapter  # OpenAI itself, not Azure (whose deployments are named in the URL)
    return adapter.name == "openai" and bool(getattr(getattr(adapter, "wire", None), "sends_model", False))


def _as_input(output: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {k: v for k, v in item.items() if k not in _ITEM_NOISE}
        for item in output
        if item.get("type") != "reasoning"
    ]


class _Conversation:
    """One call's input: the stored earlier turns (when ``previous_response_id`` names one the
    gateway kept) and the new items; the translated chat request, built on first use."""

    __slots__ = ("_chat", "items", "payload", "resolved")

    def __init__(self, payload: dict[str, Any], earlier: list[dict[str, Any]] | None) -> None:
        self.payload = payload
        self.resolved = earlier is not None or not payload.get("previous_response_id")
        self.items = [*(earlier or ()), *responses.history_items(payload)]
        self._chat: dict[str, Any] | None = None

    def native(self) -> dict[str, Any]:
        if not self.payload.get("previous_response_id") or not self.resolved:
            return self.payload  # nothing to expand, or an id only the upstream may know
        body = {k: v for k, v in self.payload.items() if k != "previous_response_id"}
        body["input"] = self.items
        return body

    def chat(self) -> dict[str, Any]:
        if not self.resolved:
            raise ResponseNotFoundError(self.payload["previous_response_id"])
        if self._chat is None:
            self._chat = responses.to_chat_request(self.payload, self.items)
        return self._chat


class ResponsesProtocol:
    """``POST /v1/responses`` (``invoke``) and ``GET``/``DELETE /v1/responses/{id}`` (``resource``)."""

    error_body = staticmethod(responses.error_body)

    async def invoke(self, call: AgentCall) -> tuple[bytes, Target, float] | float:
        payload = responses.validate_request(call.payload)
        store = response_store(call.state)
        earlier = None
        previous = payload.get("previous_response_id")
        if previous:
            try:
                stored = await store.get(previous)
            except ResponseNotFoundError:
                pass
            else:
                earlier = [*stored["conversation"], *_as_input(stored["response"].get("output") or [])]
        conversation = _Conversation(payload, earlier)
        if payload.get("stream"):
            return await self._stream(call, conversation, store)
        upstreams: Upstreams = call.state.upstream
        model = call.model
        response_id, created = f"resp_{uuid.uuid4().hex}", int(time.time())

        async def run(target: Target, remaining: float) -> tuple[dict[str, Any], Usage]:
            adapter, upstream = target.adapter, upstreams.client(target.transport)
            if _is_openai(target):
                body = await upstream.call(openai_native(adapter), CHAT, conversation.native(), remaining)
                return body, native_usage(body.get("usage"), estimate_prompt_tokens(payload))
            chat = conversation.chat()
            result = await upstream.call(adapter, CHAT, chat, remaining)
            return responses.response_from_chat(result, payload, response_id, model, created), usage_of(
                result, chat
            )

        upstream_started = perf_counter()
        try:
            (answer, used), served = await call_with(call.entry.plan, run)
        finally:
            upstream_seconds = perf_counter() - upstream_started
        # The trace's gen_ai.response.finish_reasons: why an incomplete answer stopped, else its status.
        incomplete = answer.get("incomplete_details") or {}
        reason = incomplete.get("reason") or answer.get("status")
        await charge(call, served, used, [reason] if reason else None)  # limits, budgets, usage table
        await _keep(store, payload, answer, conversation)
        return orjson.dumps(answer), served, upstream_seconds

    async def _stream(self, call: AgentCall, conversation: _Conversation, store: ResponseStore) -> float:
        upstreams: Upstreams = call.state.upstream
        timeout, payload = call.entry.plan.timeout, conversation.payload

        def opener(target: Target) -> AsyncGenerator[Any, None]:
            adapter, upstream = target.adapter, upstreams.client(target.transport)
            if _is_openai(target):
                return upstream.stream_batches(openai_native(adapter), CHAT, conversation.native(), timeout)
            return upstream.stream_batches(adapter, CHAT, conversation.chat(), timeout)

        upstream_started = perf_counter()
        served, first, batches = await open_stream_with(call.entry.plan, opener)
        upstream_seconds = perf_counter() - upstream_started
        translator: Any
        estimate = estimate_prompt_tokens(payload)
        native: NativeEvents | None = None
        machine: ResponsesStream | None = None
        if _is_openai(served):
            native = translator = NativeEvents(_TERMINAL, _native_failure, None)
        else:
            machine = ResponsesStream(payload, f"resp_{uuid.uuid4().hex}", call.model, int(time.time()))
            translator = Counted(machine)

        def used() -> Usage:
            if native is not None:
                return native_usage(native.usage, estimate)
            return translator.tally.result(conversation.chat())  # type: ignore[no-any-return]

        overhead = perf_counter() - call.started - upstream_seconds
        await send_stream(call, served, first, batches, translator, overhead, used)
        final = machine.response if machine is not None else _final_of(native)  # type: ignore[arg-type]
        if final is not None:
            await _keep(store, payload, final, conversation)
        return overhead

    async def resource(self, state: Any, method: str, response_id: str) -> bytes:
        store = response_store(state)
        if method == "DELETE":
            await store.delete(response_id)
            return orjson.dumps({"id": response_id, "object": "response", "deleted": True})
        return orjson.dumps((await store.get(response_id))["response"])


def _native_failure(exc: Any) -> bytes:
    data = {"type": "error", "sequence_number": 0, **responses.error_payload(exc)}
    return b"event: error\ndata: " + orjson.dumps(data) + b"\n\n"


def _final_of(events: NativeEvents) -> dict[str, Any] | None:
    if events.final is None:
        return None
    response = orjson.loads(events.final).get("response")
    return response if isinstance(response, dict) else None


async def _keep(
    store: ResponseStore, payload: dict[str, Any], answer: dict[str, Any], conversation: _Conversation
) -> None:
    if payload.get("store") is False or not isinstance(answer.get("id"), str):
        return
    try:
        if not await store.put(answer, conversation.items):
            logger.warning("response %s not stored: larger than the store's entry bound", answer["id"])
    except SharedStateUnavailableError as exc:  # the answer still goes out; a follow-up would 404
        logger.warning("response %s not stored: %s", answer["id"], exc.message)
