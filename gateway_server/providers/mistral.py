"""Mistral AI: chat (``POST {base}/chat/completions``), completions through chat, embeddings
(``POST {base}/embeddings``); ``mistral_api_base`` defaults to ``https://api.mistral.ai/v1``.

Mistral's API is close to OpenAI's, so most of a request passes unchanged. Renamed: ``seed`` →
``random_seed``, ``max_completion_tokens`` → ``max_tokens``, embeddings ``dimensions`` →
``output_dimension``. Refused with a 400 (Mistral has no equivalent): ``logit_bias``, ``user``.
``stream_options`` is dropped: Mistral always ends a stream with its usage. Completions send the
prompt as one user message (Mistral's ``/fim/completions`` is fill-in-the-middle for code models
only, not a general completions API). Tool-call ids: Mistral takes only ids of exactly 9 letters
and digits, so any other id in the conversation (OpenAI's ``call_...``, Anthropic's ``toolu_...``)
is replaced by :func:`mistral_call_id`, 9 base-62 characters of its SHA-256: the same id always maps
to the same value, so an assistant's ``tool_calls[].id`` and the ``tool`` message answering it still
match; valid ids are sent unchanged. Answers carry Mistral's own ids (already 9 characters) and are
not mapped back: the gateway keeps no state, and the caller's history keeps its own ids, mapped again
on each request. Answers: Mistral's ``model_length`` finish reason is
``length``; message content given as chunks (reasoning models) keeps the text chunks; tool-call
arguments given as objects are encoded as JSON strings. Error bodies come in two shapes, ``{"message":
str | {"detail": [...]}}`` and FastAPI's ``{"detail": [...]}``: both become one readable reason.
"""

from __future__ import annotations

import hashlib
import re
import string
from typing import Any

from pydantic import field_validator

from gateway_server.errors import UpstreamStatusError
from gateway_server.providers._chat_backed import ChatBackedAdapter
from gateway_server.providers._translate import (
    base_url,
    chat_chunks_to_completions,
    dump_arguments,
    event_json,
    max_tokens_of,
    refuse,
    shape_error,
)
from gateway_server.providers.base import (
    ProviderConfig,
    UpstreamRequest,
    origin_of,
    reason_from_body,
)
from gateway_server.providers.streaming import StreamEvent, chat_chunk
from gateway_server.routes import RouteType
from gateway_server.secrets import Secret

__all__ = ["MistralAdapter", "MistralConfig", "mistral_call_id"]

DEFAULT_MISTRAL_API_BASE = "https://api.mistral.ai/v1"

_REFUSED = ("logit_bias", "user")
_DROPPED = frozenset({"stream_options", "max_completion_tokens", "seed", "model"})
_FINISH = {"model_length": "length"}
_CALL_ID = re.compile(r"[a-zA-Z0-9]{9}")
_BASE62 = string.digits + string.ascii_letters


class MistralConfig(ProviderConfig):
    mistral_api_key: Secret
    mistral_api_base: str = DEFAULT_MISTRAL_API_BASE

    @field_validator("mistral_api_base")
    @classmethod
    def _check_base(cls, value: str) -> str:
        return base_url(value)


class MistralAdapter(ChatBackedAdapter, provider="mistral"):
    config_model = MistralConfig
    config: MistralConfig

    def __init__(self, config: MistralConfig, model_name: str | None) -> None:
        super().__init__(config, model_name)
        self.chat_url = f"{config.mistral_api_base}/chat/completions"
        self.embeddings_url = f"{config.mistral_api_base}/embeddings"
        self.origin = origin_of(config.mistral_api_base)
        self.headers = {
            "Authorization": f"Bearer {config.mistral_api_key.get()}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        }

    # ----------------------------------------------------------- requests

    def build_chat_request(self, payload: dict[str, Any]) -> UpstreamRequest:
        refuse(payload, _REFUSED, self.name)
        body: dict[str, Any] = {"model": self.model_name}
        body.update({k: v for k, v in payload.items() if k not in _DROPPED and v is not None})
        if max_tokens_of(payload) is not None:
            body["max_tokens"] = max_tokens_of(payload)
        if payload.get("seed") is not None:
            body["random_seed"] = payload["seed"]
        messages = body["messages"] = [dict(message) for message in payload["messages"]]
        for message in messages:
            if message.get("role") == "developer":
                message["role"] = "system"
            if message.get("tool_calls"):
                message["tool_calls"] = [_with_mistral_id(call) for call in message["tool_calls"]]
            if isinstance(message.get("tool_call_id"), str):
                message["tool_call_id"] = mistral_call_id(message["tool_call_id"])
        return UpstreamRequest(url=self.chat_url, headers=self.headers, body=body)

    def build_embeddings_request(self, payload: dict[str, Any]) -> UpstreamRequest:
        refuse(payload, _REFUSED, self.name)
        body: dict[str, Any] = {"model": self.model_name}
        body.update({k: v for k, v in payload.items() if k not in ("dimensions", "model") and v is not None})
        if payload.get("dimensions") is not None:
            body["output_dimension"] = payload["dimensions"]
        return UpstreamRequest(url=self.embeddings_url, headers=self.headers, body=body)

    # ----------------------------------------------------------- responses

    def parse_chat_response(self, body: dict[str, Any]) -> dict[str, Any]:
        choices = []
        for index, choice in enumerate(body["choices"]):
            message = choice["message"]
            out: dict[str, Any] = {"role": "assistant", "content": _text(message.get("content"))}
            if message.get("tool_calls"):
                out["tool_calls"] = [_tool_call(call) for call in message["tool_calls"]]
                out["content"] = out["content"] or None  # Mistral sends "" beside tool calls; OpenAI null
            choices.append(
                {
                    "index": choice.get("index", index),
                    "message": out,
                    "finish_reason": self._finish(choice.get("finish_reason")),
                }
            )
        result: dict[str, Any] = {
            "id": body["id"],
            "object": "chat.completion",
            "model": body.get("model") or self.model_name,
            "choices": choices,
            "usage": _usage(body.get("usage")),
        }
        if body.get("created"):
            result["created"] = body["created"]
        return result

    def parse_embeddings_response(self, body: dict[str, Any]) -> dict[str, Any]:
        usage = body.get("usage") or {}
        return {
            "object": "list",
            "data": [
                {"object": "embedding", "index": item.get("index", i), "embedding": item["embedding"]}
                for i, item in enumerate(body["data"])
            ],
            "model": body.get("model") or self.model_name,
            "usage": {"prompt_tokens": usage.get("prompt_tokens"), "total_tokens": usage.get("total_tokens")},
        }

    def _finish(self, reason: str | None) -> str | None:
        if reason == "error":
            raise UpstreamStatusError(
                provider=self.name,
                upstream_status=500,
                reason="the generation ended with finish_reason 'error'",
            )
        return _FINISH.get(reason, reason) if reason is not None else None

    # ----------------------------------------------------------- streaming

    def parse_stream_event(
        self, route_type: RouteType, event: StreamEvent, state: dict[str, Any]
    ) -> list[dict[str, Any]]:
        if event.data == "[DONE]":
            return []
        data = event_json(event, self.name)
        try:
            chunks = self._stream_chunks(data, state)
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            raise shape_error(self.name, exc) from exc
        return chunks if route_type is RouteType.CHAT else chat_chunks_to_completions(chunks)

    def _stream_chunks(self, data: dict[str, Any], state: dict[str, Any]) -> list[dict[str, Any]]:
        if data.get("object") == "error" or ("choices" not in data and "message" in data):
            raise UpstreamStatusError(
                provider=self.name, upstream_status=500, reason=self.error_reason(500, data)
            )
        model = data.get("model") or self.model_name
        chunks = []
        choices = data["choices"]
        for position, choice in enumerate(choices):
            index = choice.get("index", 0)
            delta = choice.get("delta") or {}
            out: dict[str, Any] = {}
            if index not in state.setdefault("roles", set()):
                state["roles"].add(index)
                out["role"] = "assistant"
            content = _text(delta.get("content"))
            if content:
                out["content"] = content
            if delta.get("tool_calls"):
                out["tool_calls"] = [self._tool_delta(call, index, state) for call in delta["tool_calls"]]
            last = position == len(choices) - 1
            usage = _usage(data["usage"]) if last and data.get("usage") else None
            chunk = chat_chunk(
                model,
                index=index,
                delta=out,
                finish_reason=self._finish(choice.get("finish_reason")),
                usage=usage,
            )
            if data.get("id"):
                chunk["id"] = data["id"]
            chunks.append(chunk)
        return chunks

    @staticmethod
    def _tool_delta(call: dict[str, Any], choice: int, state: dict[str, Any]) -> dict[str, Any]:
        # Mistral sends each call whole, and its own index field is not reliable (often 0 for every
        # call): number calls in the order their ids first appear, per choice.
        seen = state.setdefault("tools", {}).setdefault(choice, {})
        call_id = call.get("id")
        if call_id and call_id != "null" and call_id not in seen:
            seen[call_id] = len(seen)
        position = seen.get(call_id, max(len(seen) - 1, 0))
        out: dict[str, Any] = {"index": position}
        if call_id and call_id != "null":
            out.update(id=call_id, type="function")
        function = call.get("function") or {}
        out["function"] = {
            key: (dump_arguments(value) if key == "arguments" else value)
            for key, value in function.items()
            if key in ("name", "arguments")
        }
        return out

    # ----------------------------------------------------------- errors

    def error_reason(self, status: int, body: Any) -> str:
        if isinstance(body, dict):
            message = body.get("message")
            if isinstance(message, dict):
                body = message
            details = body.get("detail")
            if isinstance(details, list) and details:
                return "; ".join(_detail(item) for item in details)
        return reason_from_body(body, fallback=f"HTTP {status}")


# ---------------------------------------------------------------- helpers (pure)


def mistral_call_id(call_id: str) -> str:
    """A tool-call id as Mistral accepts it: unchanged if it is 9 letters and digits, otherwise 9
    base-62 characters of its SHA-256 (deterministic, so a call and its result keep matching)."""
    if _CALL_ID.fullmatch(call_id):
        return call_id
    number = int.from_bytes(hashlib.sha256(call_id.encode()).digest()[:8], "big")
    characters = []
    for _ in range(9):
        number, digit = divmod(number, len(_BASE62))
        characters.append(_BASE62[digit])
    return "".join(characters)


def _with_mistral_id(call: Any) -> Any:
    if isinstance(call, dict) and isinstance(call.get("id"), str):
        return {**call, "id": mistral_call_id(call["id"])}
    return call


def _text(content: Any) -> str | None:
    """Message content as a string: Mistral may send a list of chunks (text, thinking, references)."""
    if content is None or isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if part.get("type") == "text")


def _tool_call(call: dict[str, Any]) -> dict[str, Any]:
    function = call["function"]
    return {
        "id": call["id"],
        "type": "function",
        "function": {"name": function["name"], "arguments": dump_arguments(function.get("arguments"))},
    }


def _detail(item: Any) -> str:
    if not isinstance(item, dict):
        return str(item)
    location = ".".join(str(part) for part in item.get("loc", ()) if part != "body")
    return f"{location}: {item.get('msg')}" if location else str(item.get("msg"))


def _usage(usage: dict[str, Any] | None) -> dict[str, Any]:
    usage = usage or {}
    return {
        "prompt_tokens": usage.get("prompt_tokens"),
        "completion_tokens": usage.get("completion_tokens"),
        "total_tokens": usage.get("total_tokens"),
    }
