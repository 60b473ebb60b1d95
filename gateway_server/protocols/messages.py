"""Anthropic's Messages API ↔ the internal chat representation (pure: no I/O, clock or globals).

Request (``POST /v1/messages``) → internal chat request, for routes whose model is not Anthropic's:

- ``system`` (a string or text blocks) → one ``system`` message; ``cache_control`` marks are dropped
  (only Anthropic honours them);
- user turns: ``text`` → text parts, ``image`` (base64 or URL source) → ``image_url`` parts,
  ``tool_result`` → a ``tool`` message (before the turn's other parts, as OpenAI wants results right
  after the call; ``is_error`` prefixes the text with ``Error:``; images inside a result follow in a
  user message);
- assistant turns: ``text`` → content, ``tool_use`` → ``tool_calls``; ``thinking`` and
  ``redacted_thinking`` blocks are dropped (another vendor cannot read Anthropic's signed thinking);
- ``tools`` (custom tools with ``input_schema``) → function tools; Anthropic's server tools (web
  search, code execution, computer use, bash, text editor...) cannot run elsewhere: a 400 naming them;
- ``tool_choice`` auto/any/tool/none → auto/required/function/none, ``disable_parallel_tool_use`` →
  ``parallel_tool_calls: false``; ``stop_sequences`` → ``stop``; ``metadata.user_id`` → ``user``;
  ``max_tokens``, ``temperature``, ``top_p`` as they are (Anthropic's 0-1 temperature is a valid
  OpenAI temperature with the same default, so it is not rescaled); ``top_k`` and ``thinking`` have
  no equivalent on translated routes and are ignored.

Response: internal chat response → Anthropic's message object (``text`` and ``tool_use`` blocks,
``stop_reason`` from the finish reason, usage with cached prompt tokens apart, as Anthropic counts).
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from gateway_server.errors import GatewayError, InvalidRequestError
from gateway_server.providers._translate import dump_arguments, load_arguments

__all__ = [
    "STOP_REASONS",
    "anthropic_usage",
    "error_body",
    "error_type",
    "estimate_input_tokens",
    "message_from_chat",
    "message_id",
    "to_chat_request",
    "validate_request",
]

STOP_REASONS = {  # internal finish_reason → Anthropic stop_reason
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
_ERROR_TYPES = {  # the HTTP status → Anthropic's error.type (the SDK maps the status to its class)
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    429: "rate_limit_error",
    501: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
}
_DATA_URL = "data:{media};base64,{data}"
_CUSTOM_TOOL_TYPES = (None, "custom")
_SERVER_TOOL = re.compile(r"^(web_search|web_fetch|code_execution|computer|bash|text_editor|memory|mcp)")
_FIELDS = frozenset(
    {
        "messages", "system", "max_tokens", "temperature", "top_p", "top_k", "stop_sequences", "metadata",
        "stream", "tools", "tool_choice", "thinking", "service_tier", "container", "mcp_servers",
        "context_management", "output_config", "inference_geo", "cache_control",
    }
)  # fmt: skip


# ---------------------------------------------------------------- errors


def error_type(status: int) -> str:
    if status in _ERROR_TYPES:
        return _ERROR_TYPES[status]
    return "api_error" if status >= 500 else "invalid_request_error"


def error_body(exc: GatewayError, request_id: str | None = None) -> bytes:
    """``{"type": "error", "error": {"type", "message"}, "request_id"}``: what Anthropic's SDKs
    parse. ``request_id`` (the exchange's ``X-Request-Id``) is where Anthropic puts its own: at the
    top level, beside ``error``."""
    body: dict[str, Any] = {
        "type": "error",
        "error": {"type": error_type(exc.status_code), "message": exc.message},
    }
    if request_id is not None:
        body["request_id"] = request_id
    return orjson.dumps(body)


# ---------------------------------------------------------------- request


def validate_request(payload: dict[str, Any]) -> dict[str, Any]:
    """The checks Anthropic itself makes, with messages naming the field (before any upstream call)."""
    unknown = sorted(key for key in payload if key not in _FIELDS)
    if unknown:
        raise InvalidRequestError(f"{unknown[0]}: Extra inputs are not permitted", param=unknown[0])
    max_tokens = payload.get("max_tokens")
    if max_tokens is None:
        raise InvalidRequestError("max_tokens: Field required", param="max_tokens")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise InvalidRequestError("max_tokens: Input should be an integer >= 1", param="max_tokens")
    messages = payload.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequestError(
            "messages: a non-empty list of {role, content} is required", param="messages"
        )
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            raise InvalidRequestError(
                f"messages.{index}.role: Input should be 'user' or 'assistant'",
                param=f"messages.{index}.role",
            )
        if not isinstance(message.get("content"), (str, list)):
            raise InvalidRequestError(
                f"messages.{index}.content: a string or a list of content blocks",
                param=f"messages.{index}.content",
            )
    temperature = payload.get("temperature")
    if temperature is not None and (
        isinstance(temperature, bool)
        or not isinstance(temperature, (int, float))
        or not 0 <= temperature <= 1
    ):
        raise InvalidRequestError("temperature: a number from 0 to 1", param="temperature")
    if payload.get("stream") is not None and not isinstance(payload["stream"], bool):
        raise InvalidRequestError("stream: true or false", param="stream")
    return payload


def to_chat_request(payload: dict[str, Any]) -> dict[str, Any]:
    """A validated Messages request as the internal chat request (see the module docstring)."""
    messages: list[dict[str, Any]] = []
    system = _system_text(payload.get("system"))
    if system:
        messages.append({"role": "system", "content": system})
    for index, message in enumerate(payload["messages"]):
        if message["role"] == "user":
            messages.extend(_user_turn(message["content"], f"messages.{index}.content"))
        else:
            messages.append(_assistant_turn(message["content"], f"messages.{index}.content"))
    chat: dict[str, Any] = {"messages": messages, "max_tokens": payload["max_tokens"]}
    for key in ("temperature", "top_p"):
        if payload.get(key) is not None:
            chat[key] = payload[key]
    if payload.get("stop_sequences"):
        chat["stop"] = list(payload["stop_sequences"])
    user = (payload.get("metadata") or {}).get("user_id")
    if user:
        chat["user"] = user
    if payload.get("tools"):
        chat["tools"] = [_function_tool(index, tool) for index, tool in enumerate(payload["tools"])]
    _tool_choice(payload.get("tool_choice"), chat)
    if payload.get("stream"):
        chat["stream"] = True
    return chat


def _system_text(system: Any) -> str:
    if system is None or isinstance(system, str):
        return system or ""
    if isinstance(system, list):
        return "\n".join(_text(block, f"system.{i}") for i, block in enumerate(system))
    raise InvalidRequestError("system: a string or a list of text blocks", param="system")


def _text(block: Any, field: str) -> str:
    if not isinstance(block, dict) or block.get("type") != "text" or not isinstance(block.get("text"), str):
        raise InvalidRequestError(f"{field}: expected a text block {{type: text, text}}", param=field)
    return str(block["text"])


def _blocks(content: Any) -> list[Any]:
    return [{"type": "text", "text": content}] if isinstance(content, str) else list(content)


def _image_part(block: dict[str, Any], field: str) -> dict[str, Any]:
    source = block.get("source") or {}
    url: Any
    if source.get("type") == "base64":
        url = _DATA_URL.format(media=source.get("media_type"), data=source.get("data"))
    elif source.get("type") == "url":
        url = source.get("url")
    else:
        raise InvalidRequestError(f"{field}.source: a base64 or url image source", param=f"{field}.source")
    return {"type": "image_url", "image_url": {"url": url}}


def _user_turn(content: Any, field: str) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for index, block in enumerate(_blocks(content)):
        where = f"{field}.{index}"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            parts.append({"type": "text", "text": _text(block, where)})
        elif kind == "image":
            parts.append(_image_part(block, where))
        elif kind == "tool_result":
            text, images = _tool_result(block, where)
            results.append({"role": "tool", "tool_call_id": block.get("tool_use_id"), "content": text})
            parts.extend(images)
        else:
            raise InvalidRequestError(
                f"{where}: a '{kind}' block cannot be translated for this route; user turns may hold "
                "text, image and tool_result blocks here",
                param=where,
            )
    if not parts:
        return results
    if all(part["type"] == "text" for part in parts):
        return [*results, {"role": "user", "content": "".join(part["text"] for part in parts)}]
    return [*results, {"role": "user", "content": parts}]


def _tool_result(block: dict[str, Any], field: str) -> tuple[str, list[dict[str, Any]]]:
    if not block.get("tool_use_id"):
        raise InvalidRequestError(f"{field}.tool_use_id: Field required", param=f"{field}.tool_use_id")
    texts: list[str] = []
    images: list[dict[str, Any]] = []
    content = block.get("content")
    for index, part in enumerate(_blocks(content) if content is not None else ()):
        if isinstance(part, dict) and part.get("type") == "image":
            images.append(_image_part(part, f"{field}.content.{index}"))
        else:
            texts.append(_text(part, f"{field}.content.{index}"))
    text = "\n".join(texts)
    if block.get("is_error"):
        text = f"Error: {text}"
    return text, images


def _assistant_turn(content: Any, field: str) -> dict[str, Any]:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for index, block in enumerate(_blocks(content)):
        where = f"{field}.{index}"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            texts.append(_text(block, where))
        elif kind == "tool_use":
            arguments = dump_arguments(block.get("input") if block.get("input") is not None else {})
            calls.append(
                {
                    "id": block.get("id"),
                    "type": "function",
                    "function": {"name": block.get("name"), "arguments": arguments},
                }
            )
        elif kind in ("thinking", "redacted_thinking"):
            continue  # signed for Anthropic only; another vendor cannot use it
        else:
            raise InvalidRequestError(
                f"{where}: a '{kind}' block cannot be translated for this route; assistant turns may hold "
                "text, tool_use and thinking blocks here",
                param=where,
            )
    turn: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
    if calls:
        turn["tool_calls"] = calls
    return turn


def _function_tool(index: int, tool: Any) -> dict[str, Any]:
    field = f"tools.{index}"
    if not isinstance(tool, dict):
        raise InvalidRequestError(f"{field}: a tool definition object", param=field)
    kind = tool.get("type")
    if kind not in _CUSTOM_TOOL_TYPES or (kind is None and "input_schema" not in tool):
        label = kind or tool.get("name") or "?"
        what = "a server tool" if kind and _SERVER_TOOL.match(kind) else "not a custom tool"
        raise InvalidRequestError(
            f"{field}: '{label}' is {what} that only Anthropic runs; this route is served by another "
            "provider, so only custom tools (name, description, input_schema) can be used",
            param=field,
        )
    if not isinstance(tool.get("name"), str) or not tool["name"]:
        raise InvalidRequestError(f"{field}.name: Field required", param=f"{field}.name")
    function: dict[str, Any] = {"name": tool["name"]}
    if tool.get("description"):
        function["description"] = tool["description"]
    function["parameters"] = tool.get("input_schema") or {"type": "object", "properties": {}}
    return {"type": "function", "function": function}


def _tool_choice(choice: Any, chat: dict[str, Any]) -> None:
    if choice is None:
        return
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind == "auto":
        chat["tool_choice"] = "auto"
    elif kind == "any":
        chat["tool_choice"] = "required"
    elif kind == "none":
        chat["tool_choice"] = "none"
    elif kind == "tool" and isinstance(choice.get("name"), str):
        chat["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    else:
        raise InvalidRequestError(
            "tool_choice: {type: auto|any|none} or {type: tool, name}", param="tool_choice"
        )
    if choice.get("disable_parallel_tool_use") and chat.get("tools"):
        chat["parallel_tool_calls"] = False


# ---------------------------------------------------------------- response


def message_id(chat_id: Any, fallback: str) -> str:
    """An Anthropic-looking id (``msg_...``) for a translated answer."""
    if isinstance(chat_id, str) and chat_id.startswith("msg_"):
        return chat_id
    return f"msg_{fallback}"


def anthropic_usage(usage: dict[str, Any] | None) -> dict[str, Any]:
    """Internal usage → Anthropic's: ``input_tokens`` excludes cached prompt tokens, which are
    ``cache_read_input_tokens`` (OpenAI's ``prompt_tokens`` includes them)."""
    usage = usage or {}
    prompt = usage.get("prompt_tokens") or 0
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    return {
        "input_tokens": max(0, prompt - cached),
        "output_tokens": usage.get("completion_tokens") or 0,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
    }


def message_from_chat(result: dict[str, Any], model: str, fallback_id: str) -> dict[str, Any]:
    """A standard chat response as Anthropic's message object (the first choice)."""
    choice = result["choices"][0]
    message = choice.get("message") or {}
    content: list[dict[str, Any]] = []
    if message.get("content"):
        content.append({"type": "text", "text": message["content"]})
    for index, call in enumerate(message.get("tool_calls") or ()):
        function = call.get("function") or {}
        arguments = load_arguments(function.get("arguments"), f"choices[0].message.tool_calls[{index}]")
        content.append(
            {"type": "tool_use", "id": call.get("id"), "name": function.get("name"), "input": arguments}
        )
    stop_reason = STOP_REASONS.get(choice.get("finish_reason") or "stop", "end_turn")
    if message.get("tool_calls") and stop_reason == "end_turn":
        stop_reason = "tool_use"  # some providers say "stop" after a tool call
    return {
        "id": message_id(result.get("id"), fallback_id),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": anthropic_usage(result.get("usage")),
    }


# ---------------------------------------------------------------- count_tokens estimate


def estimate_input_tokens(payload: dict[str, Any]) -> int:
    """The documented estimate of ``count_tokens`` for routes whose provider has no such call:
    one token per 4 characters of the request's system, messages and tools as compact JSON (text
    counted as its characters), rounded up, at least 1. It is meant for budgeting (agents use it to
    decide when to compact a conversation), not billing."""
    size = len(_system_text(payload.get("system")))
    for message in payload.get("messages") or ():
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            size += len(content)
        elif content is not None:
            size += len(orjson.dumps(content))
    if payload.get("tools"):
        size += len(orjson.dumps(payload["tools"]))
    return max(1, -(-size // 4))
