"""Cohere: chat and completions through API v2 chat (``POST {base}/chat``), embeddings through
API v2 embed (``POST {base}/embed``); ``cohere_api_base`` defaults to ``https://api.cohere.com/v2``.

Why completions go through v2 chat and not v1 ``generate``: Cohere scheduled the Generate API for
deprecation on 2025-08-26 and its migration guide sends every completion use to Chat; MLflow's
adapter still calls ``/v1/generate``, which would leave this route on a retired endpoint.

Translation (OpenAI shape → v2): messages keep their roles (``developer`` → ``system``; v2 has
system, user, assistant and tool roles and OpenAI-like tool calls), ``stop`` → ``stop_sequences``,
``top_p`` → ``p``, ``max_completion_tokens`` → ``max_tokens``, ``tool_choice`` required/none →
``REQUIRED``/``NONE`` (a named function: ``REQUIRED`` with only that tool offered), ``strict`` tools
→ ``strict_tools``, ``response_format`` json_object/json_schema → ``{"type": "json_object",
"json_schema"?}``. ``temperature``, ``seed`` and the penalties pass unchanged (v2 documents no 0-5
range, unlike v1, so MLflow's 2.5x scaling is not applied). Refused with a 400: ``n`` > 1,
``logit_bias``, ``logprobs``, ``top_logprobs``, ``user``, ``parallel_tool_calls: false``.
Embeddings send ``input_type`` (required by v3+ models): the request's own, else
``search_document``; ``dimensions`` → ``output_dimension``; token-id input is refused.
"""

from __future__ import annotations

from typing import Any

from pydantic import field_validator

from gateway_server.errors import InvalidRequestError, UpstreamStatusError, UpstreamTimeoutError
from gateway_server.providers._chat_backed import ChatBackedAdapter
from gateway_server.providers._translate import (
    base_url,
    chat_chunks_to_completions,
    dump_arguments,
    event_json,
    function_tools,
    max_tokens_of,
    refuse,
    shape_error,
    stop_list,
    text_of,
    tool_choice_of,
)
from gateway_server.providers.base import ProviderConfig, UpstreamRequest, origin_of
from gateway_server.providers.streaming import StreamEvent, chat_chunk
from gateway_server.routes import RouteType
from gateway_server.secrets import Secret

__all__ = ["DEFAULT_INPUT_TYPE", "CohereAdapter", "CohereConfig"]

DEFAULT_COHERE_API_BASE = "https://api.cohere.com/v2"
DEFAULT_INPUT_TYPE = "search_document"

_REFUSED = ("logit_bias", "logprobs", "top_logprobs", "user")
_TRANSLATED = frozenset(
    {
        "messages", "max_tokens", "max_completion_tokens", "stop", "top_p", "tools", "tool_choice",
        "parallel_tool_calls", "n", "stream", "stream_options", "response_format", "model",
    }
)  # fmt: skip
_EMBED_TRANSLATED = frozenset({"input", "dimensions", "encoding_format", "model"})
_FINISH = {"COMPLETE": "stop", "STOP_SEQUENCE": "stop", "MAX_TOKENS": "length", "TOOL_CALL": "tool_calls"}


class CohereConfig(ProviderConfig):
    cohere_api_key: Secret
    cohere_api_base: str = DEFAULT_COHERE_API_BASE

    @field_validator("cohere_api_base")
    @classmethod
    def _check_base(cls, value: str) -> str:
        value = base_url(value)
        if value.endswith("/v1"):
            raise ValueError(
                "the cohere provider speaks Cohere's API v2; give the v2 base, e.g. https://api.cohere.com/v2"
            )
        return value


class CohereAdapter(ChatBackedAdapter, provider="cohere"):
    config_model = CohereConfig
    config: CohereConfig

    def __init__(self, config: CohereConfig, model_name: str | None) -> None:
        super().__init__(config, model_name)
        self.chat_url = f"{config.cohere_api_base}/chat"
        self.embed_url = f"{config.cohere_api_base}/embed"
        self.origin = origin_of(config.cohere_api_base)
        self.headers = {
            "Authorization": f"Bearer {config.cohere_api_key.get()}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        }

    # ----------------------------------------------------------- requests

    def build_chat_request(self, payload: dict[str, Any]) -> UpstreamRequest:
        return UpstreamRequest(url=self.chat_url, headers=self.headers, body=self._chat_body(payload))

    def build_embeddings_request(self, payload: dict[str, Any]) -> UpstreamRequest:
        refuse(payload, ("user",), self.name)
        if payload.get("encoding_format") not in (None, "float"):
            refuse(payload, ("encoding_format",), self.name)
        texts = payload["input"]
        texts = [texts] if isinstance(texts, str) else texts
        if not all(isinstance(text, str) for text in texts):
            raise InvalidRequestError(
                "Invalid value for 'input': the cohere provider embeds text; send strings, not token ids.",
                param="input",
            )
        body: dict[str, Any] = {"model": self.model_name, "texts": texts, "input_type": DEFAULT_INPUT_TYPE}
        body["embedding_types"] = ["float"]
        if payload.get("dimensions") is not None:
            body["output_dimension"] = payload["dimensions"]
        body.update(
            {k: v for k, v in payload.items() if k not in _EMBED_TRANSLATED and k != "user" and v is not None}
        )
        return UpstreamRequest(url=self.embed_url, headers=self.headers, body=body)

    def _chat_body(self, payload: dict[str, Any]) -> dict[str, Any]:
        refuse(payload, _REFUSED, self.name)
        n = payload.get("n")
        if n is not None and n != 1:
            raise InvalidRequestError(
                f"The cohere provider returns one choice per request; 'n' must be 1, not {n}.", param="n"
            )
        if payload.get("parallel_tool_calls") is False:
            refuse(payload, ("parallel_tool_calls",), self.name)
        body: dict[str, Any] = {"model": self.model_name, "messages": _messages(payload["messages"])}
        if payload.get("stream"):
            body["stream"] = True
        if max_tokens_of(payload) is not None:
            body["max_tokens"] = max_tokens_of(payload)
        if payload.get("stop") is not None:
            body["stop_sequences"] = stop_list(payload["stop"])
        if payload.get("top_p") is not None:
            body["p"] = payload["top_p"]
        _add_tools(body, payload)
        response_format = _response_format(payload.get("response_format"))
        if response_format is not None:
            body["response_format"] = response_format
        for key, value in payload.items():
            if key in _TRANSLATED or value is None:
                continue
            if key in body:
                raise InvalidRequestError(
                    f"'{key}' is set by the gateway from the OpenAI-shaped request; remove it.", param=key
                )
            body[key] = value
        return body

    # ----------------------------------------------------------- responses

    def parse_chat_response(self, body: dict[str, Any]) -> dict[str, Any]:
        message = body["message"]
        texts = [part["text"] for part in message.get("content") or () if part.get("type") == "text"]
        tool_calls = [
            {
                "id": call["id"],
                "type": "function",
                "function": {
                    "name": call["function"]["name"],
                    "arguments": dump_arguments(call["function"].get("arguments")),
                },
            }
            for call in message.get("tool_calls") or ()
        ]
        out: dict[str, Any] = {
            "role": "assistant",
            "content": "".join(texts) if texts or not tool_calls else None,
        }
        if tool_calls:
            out["tool_calls"] = tool_calls
        return {
            "id": body["id"],
            "object": "chat.completion",
            "model": self.model_name,
            "choices": [
                {"index": 0, "message": out, "finish_reason": self._finish(body.get("finish_reason"))}
            ],
            "usage": _usage(body.get("usage")),
        }

    def parse_embeddings_response(self, body: dict[str, Any]) -> dict[str, Any]:
        vectors = body["embeddings"]["float"]
        billed = ((body.get("meta") or {}).get("billed_units") or {}).get("input_tokens")
        tokens = int(billed) if billed is not None else None
        return {
            "object": "list",
            "data": [
                {"object": "embedding", "index": i, "embedding": vector} for i, vector in enumerate(vectors)
            ],
            "model": self.model_name,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    def _finish(self, reason: str | None, error: str | None = None) -> str:
        if reason == "TIMEOUT":
            raise UpstreamTimeoutError(f"{self.name} ended the generation with a timeout", provider=self.name)
        if reason == "ERROR" or error:
            raise UpstreamStatusError(
                provider=self.name, upstream_status=500, reason=error or "the generation ended with an error"
            )
        return _FINISH.get(reason or "COMPLETE", "stop")

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
        kind = data["type"]
        if kind == "message-start":
            state["id"] = data.get("id")
            state["tools"] = {}
            return [self._chunk(state, {"role": "assistant", "content": ""})]
        if kind in ("content-start", "content-delta"):
            text = data["delta"]["message"]["content"].get("text")
            return [self._chunk(state, {"content": text})] if text else []
        if kind == "tool-call-start":
            call = data["delta"]["message"]["tool_calls"]
            function = call.get("function") or {}
            position = state["tools"].setdefault(data["index"], len(state["tools"]))
            opening = {"index": position, "id": call["id"], "type": "function"}
            opening["function"] = {"name": function["name"], "arguments": function.get("arguments") or ""}
            return [self._chunk(state, {"tool_calls": [opening]})]
        if kind == "tool-call-delta":
            arguments = data["delta"]["message"]["tool_calls"]["function"]["arguments"]
            call = {"index": state["tools"][data["index"]], "function": {"arguments": arguments}}
            return [self._chunk(state, {"tool_calls": [call]})]
        if kind == "message-end":
            delta = data.get("delta") or {}
            finish = self._finish(delta.get("finish_reason"), delta.get("error"))
            return [self._chunk(state, {}, finish_reason=finish, usage=_usage(delta.get("usage")))]
        return []  # content-end, tool-plan-delta, tool-call-end, citations, debug

    def _chunk(self, state: dict[str, Any], delta: dict[str, Any], **extra: Any) -> dict[str, Any]:
        chunk = chat_chunk(self.model_name, delta=delta, **extra)
        if state.get("id"):
            chunk["id"] = state["id"]
        return chunk

    # ----------------------------------------------------------- errors


# ---------------------------------------------------------------- helpers (pure)


def _messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for index, message in enumerate(messages):
        field = f"messages[{index}]"
        role = message["role"]
        content = message.get("content")
        if role in ("system", "developer"):
            out.append({"role": "system", "content": text_of(content, f"{field}.content")})
        elif role == "user":
            out.append({"role": "user", "content": _user_content(content, f"{field}.content")})
        elif role == "assistant":
            turn: dict[str, Any] = {"role": "assistant"}
            text = text_of(content, f"{field}.content")
            if text or not message.get("tool_calls"):
                turn["content"] = text
            if message.get("tool_calls"):
                turn["tool_calls"] = [
                    {
                        "id": call.get("id"),
                        "type": "function",
                        "function": {
                            "name": (call.get("function") or {}).get("name"),
                            "arguments": dump_arguments((call.get("function") or {}).get("arguments")),
                        },
                    }
                    for call in message["tool_calls"]
                ]
            out.append(turn)
        elif role == "tool":
            if not message.get("tool_call_id"):
                raise InvalidRequestError(f"Missing '{field}.tool_call_id'.", param=f"{field}.tool_call_id")
            out.append(
                {
                    "role": "tool",
                    "tool_call_id": message["tool_call_id"],
                    "content": text_of(content, f"{field}.content"),
                }
            )
        else:
            raise InvalidRequestError(
                f"Invalid value for '{field}.role': the cohere provider accepts system, developer, user, "
                f"assistant and tool messages, not '{role}'.",
                param=f"{field}.role",
            )
    return out


def _user_content(content: Any, field: str) -> Any:
    if isinstance(content, str):
        return content
    for index, part in enumerate(content or ()):
        if not isinstance(part, dict) or part.get("type") not in ("text", "image_url"):
            raise InvalidRequestError(
                f"Invalid value for '{field}[{index}]': the cohere provider accepts text and image_url parts.",
                param=f"{field}[{index}]",
            )
    return content


def _add_tools(body: dict[str, Any], payload: dict[str, Any]) -> None:
    functions = [function for _, function in function_tools(payload.get("tools"))]
    choice = tool_choice_of(payload.get("tool_choice"))
    if choice is not None and choice[0] == "function":
        functions = [function for function in functions if function["name"] == choice[1]]
        if not functions:
            raise InvalidRequestError(
                f"Invalid value for 'tool_choice': no tool named '{choice[1]}' is in 'tools'.",
                param="tool_choice",
            )
    if functions:
        tools = []
        for function in functions:
            spec = {key: function[key] for key in ("name", "description", "parameters") if key in function}
            tools.append({"type": "function", "function": spec})
        body["tools"] = tools
        if any(function.get("strict") for function in functions):
            body["strict_tools"] = True
    if choice is not None and choice[0] != "auto":
        body["tool_choice"] = "NONE" if choice[0] == "none" else "REQUIRED"


def _response_format(value: Any) -> dict[str, Any] | None:
    if value is None or value == {"type": "text"}:
        return None
    kind = value.get("type") if isinstance(value, dict) else None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema" and isinstance(value.get("json_schema"), dict):
        schema = value["json_schema"].get("schema")
        return {"type": "json_object", "json_schema": schema} if schema else {"type": "json_object"}
    raise InvalidRequestError(
        "Invalid value for 'response_format': expected type text, json_object or json_schema.",
        param="response_format",
    )


def _usage(usage: dict[str, Any] | None) -> dict[str, Any]:
    usage = usage or {}
    counts = usage.get("tokens") or usage.get("billed_units") or {}
    prompt, completion = counts.get("input_tokens"), counts.get("output_tokens")
    prompt = int(prompt) if prompt is not None else None
    completion = int(completion) if completion is not None else None
    total = prompt + completion if prompt is not None and completion is not None else None
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total}
