"""Anthropic: chat and completions through the Messages API (``POST {base}/messages``).

Translation (OpenAI shape → Messages API):

- ``system``/``developer`` messages → the top-level ``system`` string (joined with newlines);
  ``tool`` messages → ``tool_result`` blocks of a user turn; assistant ``tool_calls`` → ``tool_use``
  blocks; consecutive turns of one role are merged (the API wants user and assistant to alternate).
- ``max_tokens``/``max_completion_tokens`` → ``max_tokens``, which the API requires: absent, it is
  :data:`DEFAULT_MAX_TOKENS` (8192, MLflow 3.x's default: every current Claude model can write that
  much; set it explicitly for a model with a smaller output limit).
- ``temperature`` is halved: the gateway's range is OpenAI's 0-2, Anthropic's is 0-1 (MLflow does
  the same, so every valid gateway value stays valid upstream). ``stop`` → ``stop_sequences``;
  ``tool_choice`` auto/none/required/function → auto/none/any/tool; ``parallel_tool_calls: false``
  → ``disable_parallel_tool_use``; ``user`` → ``metadata.user_id``.
- ``response_format`` ``json_object``/``json_schema`` → one forced tool whose input is the answer,
  which comes back as the message's ``content`` (a JSON string); see ``_anthropic_json.py``.
- Refused with a 400: ``n`` > 1, ``frequency_penalty``, ``presence_penalty``, ``logit_bias``,
  ``logprobs``, ``top_logprobs``, ``seed``. Other keys (the API's own ``top_p``, ``top_k``,
  ``thinking``...) pass through unchanged.

Completions send the prompt as the single user message. There are no embeddings (501). Errors: the
body is ``{"type": "error", "error": {"type", "message"}}``; 529 ``overloaded_error`` counts as a 503.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import field_validator

from gateway_server.errors import InvalidRequestError, UpstreamStatusError
from gateway_server.providers._anthropic_json import JSON_TOOL, json_tool_choice, response_format_tool
from gateway_server.providers._chat_backed import ChatBackedAdapter
from gateway_server.providers._translate import (
    base_url,
    chat_chunks_to_completions,
    dump_arguments,
    event_json,
    function_tools,
    load_arguments,
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

__all__ = ["DEFAULT_MAX_TOKENS", "AnthropicAdapter", "AnthropicConfig"]

DEFAULT_ANTHROPIC_API_BASE = "https://api.anthropic.com/v1"
DEFAULT_ANTHROPIC_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 8192

_REFUSED = ("frequency_penalty", "presence_penalty", "logit_bias", "logprobs", "top_logprobs", "seed")
# Keys of the standard request this module translates; every other key passes through as is.
_TRANSLATED = frozenset(
    {
        "messages", "max_tokens", "max_completion_tokens", "stop", "temperature", "tools", "tool_choice",
        "parallel_tool_calls", "user", "n", "stream", "stream_options", "response_format", "model",
    }
)  # fmt: skip
_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
_ERROR_STATUS = {  # error.type of a stream "error" event → the HTTP status Anthropic uses for it
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}
_DATA_URL = re.compile(r"data:(?P<media>[\w.+-]+/[\w.+-]+);base64,(?P<data>.*)", re.DOTALL)


class AnthropicConfig(ProviderConfig):
    anthropic_api_key: Secret
    anthropic_version: str = DEFAULT_ANTHROPIC_VERSION
    anthropic_api_base: str = DEFAULT_ANTHROPIC_API_BASE

    @field_validator("anthropic_api_base")
    @classmethod
    def _check_base(cls, value: str) -> str:
        return base_url(value)

    @field_validator("anthropic_version")
    @classmethod
    def _check_version(cls, value: str) -> str:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            raise ValueError(f"must be an API version date such as {DEFAULT_ANTHROPIC_VERSION}")
        return value


class AnthropicAdapter(ChatBackedAdapter, provider="anthropic"):
    config_model = AnthropicConfig
    config: AnthropicConfig

    def __init__(self, config: AnthropicConfig, model_name: str | None) -> None:
        super().__init__(config, model_name)
        self.url = f"{config.anthropic_api_base}/messages"
        self.origin = origin_of(config.anthropic_api_base)
        self.headers = {
            "x-api-key": config.anthropic_api_key.get(),
            "anthropic-version": config.anthropic_version,
            "content-type": "application/json",
        }

    # ----------------------------------------------------------- requests

    def build_chat_request(self, payload: dict[str, Any]) -> UpstreamRequest:
        return UpstreamRequest(url=self.url, headers=self.headers, body=self._body(payload))

    def _body(self, payload: dict[str, Any]) -> dict[str, Any]:
        self._refuse(payload)
        json_tool = response_format_tool(payload, self.name)
        system, messages = _messages(payload["messages"])
        body: dict[str, Any] = {"model": self.model_name} if self.model_name else {}
        body["max_tokens"] = max_tokens_of(payload) or DEFAULT_MAX_TOKENS
        body["messages"] = messages
        if system:
            body["system"] = system
        if payload.get("stop") is not None:
            body["stop_sequences"] = stop_list(payload["stop"])
        if payload.get("temperature") is not None:
            body["temperature"] = payload["temperature"] / 2
        if json_tool is not None:
            body["tools"] = [json_tool]
        elif payload.get("tools"):
            body["tools"] = [_tool(index, function) for index, function in function_tools(payload["tools"])]
        tool_choice = json_tool_choice() if json_tool is not None else _tool_choice(payload)
        if tool_choice is not None:
            body["tool_choice"] = tool_choice
        if payload.get("user") is not None:
            body["metadata"] = {"user_id": payload["user"]}
        if payload.get("stream"):
            body["stream"] = True
        return _pass_through(payload, body)

    def _refuse(self, payload: dict[str, Any]) -> None:
        refuse(payload, _REFUSED, self.name)
        n = payload.get("n")
        if n is not None and n != 1:
            raise InvalidRequestError(
                f"The anthropic provider returns one choice per request; 'n' must be 1, not {n}.", param="n"
            )

    # ----------------------------------------------------------- responses

    def parse_chat_response(self, body: dict[str, Any]) -> dict[str, Any]:
        texts: list[str] = []
        tool_calls: list[dict[str, Any]] = []
        answer: str | None = None  # the input of the response_format tool, as a JSON string
        for block in body["content"]:
            if block["type"] == "text":
                texts.append(block["text"])
            elif block["type"] == "tool_use" and block["name"] == JSON_TOOL:
                answer = dump_arguments(block.get("input")) if answer is None else answer
            elif block["type"] == "tool_use":
                tool_calls.append(
                    {
                        "id": block["id"],
                        "type": "function",
                        "function": {"name": block["name"], "arguments": dump_arguments(block.get("input"))},
                    }
                )
            # thinking and server-tool blocks have no place in an OpenAI message
        message: dict[str, Any] = {
            "role": "assistant",
            "content": "".join(texts) if texts or not tool_calls else None,
        }
        if tool_calls:
            message["tool_calls"] = tool_calls
        finish = _finish(body.get("stop_reason"))
        if answer is not None:  # the JSON answer replaces any text beside it
            message, finish = {"role": "assistant", "content": answer}, _answer_finish(finish)
        return {
            "id": body["id"],
            "object": "chat.completion",
            "model": body.get("model") or self.model_name,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": _usage(body["usage"]),
        }

    # ----------------------------------------------------------- streaming

    def parse_stream_event(
        self, route_type: RouteType, event: StreamEvent, state: dict[str, Any]
    ) -> list[dict[str, Any]]:
        data = event_json(event, self.name)
        try:
            chunks = self._stream_chunks(data, state)
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            raise shape_error(self.name, exc) from exc
        return chunks if route_type is RouteType.CHAT else chat_chunks_to_completions(chunks)

    def _stream_chunks(self, data: dict[str, Any], state: dict[str, Any]) -> list[dict[str, Any]]:
        kind = data["type"]
        if kind == "message_start":
            message = data["message"]
            state.update(id=message.get("id"), model=message.get("model") or self.model_name)
            state["usage"] = dict(message.get("usage") or {})
            state["tools"] = {}
            state["answer"] = set()  # indices of the blocks that carry a response_format answer
            return [self._chunk(state, {"role": "assistant", "content": ""})]
        if kind == "content_block_start":
            return self._block_start(data, state)
        if kind == "content_block_delta":
            return self._block_delta(data, state)
        if kind == "message_delta":
            counts = state["usage"]
            counts.update(
                {key: value for key, value in (data.get("usage") or {}).items() if value is not None}
            )
            finish = _finish(data["delta"].get("stop_reason"))
            if state["answer"]:
                finish = _answer_finish(finish)
            return [self._chunk(state, {}, finish_reason=finish, usage=_usage(counts))]
        if kind == "error":
            error = data.get("error") or {}
            status = _ERROR_STATUS.get(str(error.get("type")), 500)
            raise UpstreamStatusError(
                provider=self.name,
                upstream_status=self.map_error_status(status, data),
                reason=error.get("message") or error.get("type") or "stream error",
            )
        return []  # ping, content_block_stop, message_stop

    def _block_start(self, data: dict[str, Any], state: dict[str, Any]) -> list[dict[str, Any]]:
        block = data["content_block"]
        if block["type"] == "tool_use" and block["name"] == JSON_TOOL:
            state["answer"].add(data["index"])  # its input streams as the message's content
            return []
        if block["type"] == "tool_use":
            position = state["tools"].setdefault(data["index"], len(state["tools"]))
            call = {"index": position, "id": block["id"], "type": "function"}
            call["function"] = {"name": block["name"], "arguments": ""}
            return [self._chunk(state, {"tool_calls": [call]})]
        if block["type"] == "text" and block.get("text"):
            return [self._chunk(state, {"content": block["text"]})]
        return []

    def _block_delta(self, data: dict[str, Any], state: dict[str, Any]) -> list[dict[str, Any]]:
        delta = data["delta"]
        if delta["type"] == "text_delta":
            return [self._chunk(state, {"content": delta["text"]})]
        if delta["type"] != "input_json_delta":
            return []  # thinking, signature and citation deltas
        if data["index"] in state["answer"]:
            return [self._chunk(state, {"content": delta["partial_json"]})] if delta["partial_json"] else []
        call = {"index": state["tools"][data["index"]], "function": {"arguments": delta["partial_json"]}}
        return [self._chunk(state, {"tool_calls": [call]})]

    def _chunk(self, state: dict[str, Any], delta: dict[str, Any], **extra: Any) -> dict[str, Any]:
        chunk = chat_chunk(state.get("model"), delta=delta, **extra)
        if state.get("id"):
            chunk["id"] = state["id"]
        return chunk

    # ----------------------------------------------------------- errors


# ---------------------------------------------------------------- helpers (pure)


def _pass_through(payload: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """Keys of the Messages API itself (``top_p``, ``top_k``, ``thinking``...) go upstream as given."""
    for key, value in payload.items():
        if key in _TRANSLATED or value is None:
            continue
        if key in body:
            raise InvalidRequestError(
                f"'{key}' is set by the gateway from the OpenAI-shaped request; remove it and use the "
                "OpenAI field instead (system messages, stop, tools...).",
                param=key,
            )
        body[key] = value
    return body


def _messages(messages: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        field = f"messages[{index}]"
        role = message["role"]
        if role in ("system", "developer"):
            system.append(text_of(message.get("content"), f"{field}.content"))
            continue
        if role == "tool":
            role, blocks = "user", [_tool_result(message, field)]
        elif role == "user":
            blocks = _user_blocks(message.get("content"), f"{field}.content")
        elif role == "assistant":
            blocks = _assistant_blocks(message, field)
        else:
            raise InvalidRequestError(
                f"Invalid value for '{field}.role': the anthropic provider accepts system, developer, user, "
                f"assistant and tool messages, not '{role}'.",
                param=f"{field}.role",
            )
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    for turn in turns:
        blocks = turn["content"]
        if len(blocks) == 1 and blocks[0].keys() == {"type", "text"}:
            turn["content"] = blocks[0]["text"]
    return "\n".join(system), turns


def _user_blocks(content: Any, field: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    blocks: list[dict[str, Any]] = []
    for index, part in enumerate(content or ()):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            blocks.append({"type": "text", "text": text_of([part], field)})
        elif kind == "image_url":
            url = part.get("image_url")
            url = url.get("url") if isinstance(url, dict) else url
            match = _DATA_URL.fullmatch(url or "")
            source = (
                {"type": "base64", "media_type": match["media"], "data": match["data"]}
                if match
                else {"type": "url", "url": url}
            )
            blocks.append({"type": "image", "source": source})
        else:
            raise InvalidRequestError(
                f"Invalid value for '{field}[{index}]': the anthropic provider accepts text and image_url parts.",
                param=f"{field}[{index}]",
            )
    return blocks


def _assistant_blocks(message: dict[str, Any], field: str) -> list[dict[str, Any]]:
    text = text_of(message.get("content"), f"{field}.content")
    blocks: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    for index, call in enumerate(message.get("tool_calls") or ()):
        function = call.get("function") or {}
        blocks.append(
            {
                "type": "tool_use",
                "id": call.get("id"),
                "name": function.get("name"),
                "input": load_arguments(
                    function.get("arguments"), f"{field}.tool_calls[{index}].function.arguments"
                ),
            }
        )
    if not blocks:  # an empty assistant turn: Anthropic refuses empty text blocks
        blocks.append({"type": "text", "text": text})
    return blocks


def _tool_result(message: dict[str, Any], field: str) -> dict[str, Any]:
    if not message.get("tool_call_id"):
        raise InvalidRequestError(f"Missing '{field}.tool_call_id'.", param=f"{field}.tool_call_id")
    return {
        "type": "tool_result",
        "tool_use_id": message["tool_call_id"],
        "content": text_of(message.get("content"), f"{field}.content"),
    }


def _tool(index: int, function: dict[str, Any]) -> dict[str, Any]:
    if function["name"] == JSON_TOOL:
        raise InvalidRequestError(
            f"Invalid value for 'tools[{index}].function.name': '{JSON_TOOL}' is reserved by the gateway "
            "(it carries JSON response_format answers); rename the tool.",
            param=f"tools[{index}].function.name",
        )
    tool: dict[str, Any] = {"name": function["name"]}
    if function.get("description"):
        tool["description"] = function["description"]
    tool["input_schema"] = function.get("parameters") or {"type": "object", "properties": {}}
    return tool


def _tool_choice(payload: dict[str, Any]) -> dict[str, Any] | None:
    choice = tool_choice_of(payload.get("tool_choice"))
    serial = payload.get("parallel_tool_calls") is False
    if choice is None:
        return (
            {"type": "auto", "disable_parallel_tool_use": True} if serial and payload.get("tools") else None
        )
    kind, name = choice
    if kind == "none":
        return {"type": "none"}
    result: dict[str, Any] = {"type": {"auto": "auto", "required": "any", "function": "tool"}[kind]}
    if name is not None:
        result["name"] = name
    if serial:
        result["disable_parallel_tool_use"] = True
    return result


def _finish(stop_reason: str | None) -> str:
    return _FINISH.get(stop_reason or "end_turn", "stop")


def _answer_finish(finish: str) -> str:
    # The forced tool call is how a JSON answer ends normally: a caller asked for no tools.
    return "stop" if finish == "tool_calls" else finish


def _usage(counts: dict[str, Any]) -> dict[str, Any]:
    # Anthropic counts cached prompt tokens apart; OpenAI's prompt_tokens includes them.
    prompt = sum(
        counts.get(key) or 0
        for key in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    )
    completion = counts.get("output_tokens") or 0
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
