"""OpenAI's Responses API ↔ the internal chat representation (pure: no I/O, clock or globals).

Request (``POST /v1/responses``) → internal chat request, for routes whose model is not OpenAI's:

- ``instructions`` → a system message; ``input`` as a string → one user message; as items:
  messages (``input_text``/``output_text`` parts → text, ``input_image`` → ``image_url``),
  ``function_call`` → the assistant's ``tool_calls`` (consecutive calls join one assistant turn),
  ``function_call_output`` → a ``tool`` message; ``reasoning`` items are dropped (encrypted for
  OpenAI only);
- function ``tools`` → chat function tools; the built-in tools the gateway cannot run (web search,
  file search, computer use, code interpreter, image generation, MCP, shell) → a 400 naming them;
- ``tool_choice``, ``parallel_tool_calls``, ``temperature``, ``top_p`` as they are;
  ``max_output_tokens`` → ``max_tokens``; ``text.format`` ``json_schema``/``json_object`` →
  ``response_format``; ``user`` as is.

Response: internal chat response → a Response object (a ``message`` item with ``output_text``,
one ``function_call`` item per tool call, ``usage``, ``status``: ``incomplete`` when the output hit
``max_output_tokens``).
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway_server.errors import GatewayError, InvalidRequestError

__all__ = [
    "error_body",
    "error_payload",
    "history_items",
    "response_from_chat",
    "response_usage",
    "to_chat_request",
    "validate_request",
]

_BUILT_IN = {
    "web_search": "web search",
    "web_search_preview": "web search",
    "file_search": "file search",
    "computer_use_preview": "computer use",
    "computer_use": "computer use",
    "code_interpreter": "code interpreter",
    "image_generation": "image generation",
    "mcp": "remote MCP",
    "local_shell": "local shell",
    "shell": "shell",
}
_ECHOED = (
    "instructions",
    "metadata",
    "temperature",
    "top_p",
    "max_output_tokens",
    "tool_choice",
    "parallel_tool_calls",
)


def error_payload(exc: GatewayError) -> dict[str, Any]:
    code = getattr(exc, "code", None)
    return {
        "message": exc.message,
        "type": exc.error_type,
        "code": code if isinstance(code, str) else None,
        "param": getattr(exc, "param", None),
    }


def error_body(exc: GatewayError, request_id: str | None = None) -> bytes:
    """OpenAI's error envelope, ``{"error": {"message", "type", "code", "param"}}``; with
    ``request_id`` (the exchange's ``X-Request-Id``) also ``error.request_id``, where the gateway's
    own envelope has it (OpenAI's SDKs keep unknown fields of ``error``)."""
    payload = error_payload(exc)
    if request_id is not None:
        payload["request_id"] = request_id
    return orjson.dumps({"error": payload})


# ---------------------------------------------------------------- request


def validate_request(payload: dict[str, Any]) -> dict[str, Any]:
    if "input" not in payload:
        raise InvalidRequestError("Missing required parameter: 'input'.", param="input")
    if not isinstance(payload["input"], (str, list)):
        raise InvalidRequestError("Invalid 'input': expected a string or a list of items.", param="input")
    tools = payload.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise InvalidRequestError("Invalid 'tools': expected a list.", param="tools")
    if payload.get("stream") is not None and not isinstance(payload["stream"], bool):
        raise InvalidRequestError("Invalid 'stream': expected true or false.", param="stream")
    return payload


def history_items(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """The request's input as a list of items (a string is one user message)."""
    value = payload["input"]
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": value}]
    return list(value)


def to_chat_request(payload: dict[str, Any], items: list[dict[str, Any]]) -> dict[str, Any]:
    """A validated Responses request (its input already expanded with any earlier turns) as the
    internal chat request."""
    messages: list[dict[str, Any]] = []
    if payload.get("instructions"):
        messages.append({"role": "system", "content": payload["instructions"]})
    for index, item in enumerate(items):
        _item(item, f"input[{index}]", messages)
    chat: dict[str, Any] = {"messages": messages}
    for key in ("temperature", "top_p", "parallel_tool_calls", "user"):
        if payload.get(key) is not None:
            chat[key] = payload[key]
    if payload.get("max_output_tokens") is not None:
        chat["max_tokens"] = payload["max_output_tokens"]
    if payload.get("tools"):
        chat["tools"] = [_function_tool(index, tool) for index, tool in enumerate(payload["tools"])]
    if payload.get("tool_choice") is not None:
        chat["tool_choice"] = _tool_choice(payload["tool_choice"])
    response_format = _response_format((payload.get("text") or {}).get("format"))
    if response_format is not None:
        chat["response_format"] = response_format
    if payload.get("stream"):
        chat["stream"] = True
    return chat


def _item(item: Any, field: str, messages: list[dict[str, Any]]) -> None:
    if not isinstance(item, dict):
        raise InvalidRequestError(f"Invalid '{field}': expected an object.", param=field)
    kind = item.get("type", "message")
    if kind == "message":
        role = item.get("role")
        if role not in ("user", "assistant", "system", "developer"):
            raise InvalidRequestError(
                f"Invalid '{field}.role': user, assistant, system or developer.", param=f"{field}.role"
            )
        messages.append({"role": role, "content": _content(item.get("content"), f"{field}.content")})
    elif kind == "function_call":
        call = {
            "id": item.get("call_id"),
            "type": "function",
            "function": {"name": item.get("name"), "arguments": item.get("arguments") or "{}"},
        }
        last = messages[-1] if messages else None
        if last is not None and last["role"] == "assistant" and "tool_calls" in last:
            last["tool_calls"].append(call)
        elif last is not None and last["role"] == "assistant" and isinstance(last.get("content"), str):
            last["tool_calls"] = [call]
        else:
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
    elif kind == "function_call_output":
        output = item.get("output")
        text = output if isinstance(output, str) else orjson.dumps(output).decode()
        messages.append({"role": "tool", "tool_call_id": item.get("call_id"), "content": text})
    elif kind == "reasoning":
        return  # encrypted for OpenAI only
    else:
        raise InvalidRequestError(
            f"Invalid '{field}': items of type '{kind}' cannot be translated for this route "
            "(messages, function_call and function_call_output can).",
            param=field,
        )


def _content(content: Any, field: str) -> Any:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise InvalidRequestError(f"Invalid '{field}': expected a string or a list of parts.", param=field)
    parts: list[dict[str, Any]] = []
    for index, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text"):
            parts.append({"type": "text", "text": part.get("text") or ""})
        elif kind == "input_image" and part.get("image_url"):
            parts.append({"type": "image_url", "image_url": {"url": part["image_url"]}})
        elif kind == "refusal":
            parts.append({"type": "text", "text": part.get("refusal") or ""})
        else:
            raise InvalidRequestError(
                f"Invalid '{field}[{index}]': '{kind}' parts cannot be translated for this route.",
                param=f"{field}[{index}]",
            )
    if all(part["type"] == "text" for part in parts):
        return "".join(part["text"] for part in parts)
    return parts


def _function_tool(index: int, tool: Any) -> dict[str, Any]:
    kind = tool.get("type") if isinstance(tool, dict) else None
    if kind in _BUILT_IN:  # OpenAI runs these itself (OpenAI routes pass them through); nobody else can
        raise InvalidRequestError(
            f"Invalid 'tools[{index}]': the built-in tool '{kind}' ({_BUILT_IN[kind]}) cannot be run by the "
            "gateway for this route (its provider is not OpenAI); only function tools can be used.",
            param=f"tools[{index}]",
        )
    if not isinstance(tool, dict) or tool.get("type") != "function" or not tool.get("name"):
        raise InvalidRequestError(
            f"Invalid 'tools[{index}]': expected {{type: function, name, parameters}}.",
            param=f"tools[{index}]",
        )
    function: dict[str, Any] = {
        "name": tool["name"],
        "parameters": tool.get("parameters") or {"type": "object", "properties": {}},
    }
    if tool.get("description"):
        function["description"] = tool["description"]
    if tool.get("strict") is not None:
        function["strict"] = tool["strict"]
    return {"type": "function", "function": function}


def _tool_choice(choice: Any) -> Any:
    if choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function" and choice.get("name"):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise InvalidRequestError(
        "Invalid 'tool_choice': auto, none, required or {type: function, name}.", param="tool_choice"
    )


def _response_format(fmt: Any) -> dict[str, Any] | None:
    if fmt is None or fmt.get("type") == "text":
        return None
    if fmt.get("type") == "json_object":
        return {"type": "json_object"}
    if fmt.get("type") == "json_schema":
        schema = {"name": fmt.get("name") or "response", "schema": fmt.get("schema") or {}}
        if fmt.get("strict") is not None:
            schema["strict"] = fmt["strict"]
        return {"type": "json_schema", "json_schema": schema}
    raise InvalidRequestError("Invalid 'text.format': text, json_object or json_schema.", param="text.format")


# ---------------------------------------------------------------- response


def response_usage(usage: dict[str, Any] | None) -> dict[str, Any]:
    usage = usage or {}
    prompt = usage.get("prompt_tokens") or 0
    completion = usage.get("completion_tokens") or 0
    return {
        "input_tokens": prompt,
        "input_tokens_details": {
            "cached_tokens": (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
        },
        "output_tokens": completion,
        "output_tokens_details": {
            "reasoning_tokens": (usage.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0
        },
        "total_tokens": usage.get("total_tokens") or prompt + completion,
    }


def envelope(
    payload: dict[str, Any], response_id: str, model: str, created_at: int, status: str
) -> dict[str, Any]:
    """The Response object's fields that do not depend on the output."""
    text_format = (payload.get("text") or {}).get("format") or {"type": "text"}
    out: dict[str, Any] = {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "error": None,
        "incomplete_details": None,
        "model": model,
        "output": [],
        "previous_response_id": payload.get("previous_response_id"),
        "store": payload.get("store", True) is not False,
        "text": {"format": text_format},
        "tools": payload.get("tools") or [],
        "usage": None,
    }
    for key in _ECHOED:
        out[key] = payload.get(key)
    out["metadata"] = payload.get("metadata") or {}
    out["tool_choice"] = payload.get("tool_choice") or "auto"
    out["parallel_tool_calls"] = payload.get("parallel_tool_calls") is not False
    return out


def response_from_chat(
    result: dict[str, Any], payload: dict[str, Any], response_id: str, model: str, created_at: int
) -> dict[str, Any]:
    choice = result["choices"][0]
    message = choice.get("message") or {}
    output: list[dict[str, Any]] = []
    if message.get("content"):
        part = {"type": "output_text", "text": message["content"], "annotations": []}
        output.append(
            {
                "type": "message",
                "id": f"msg_{response_id[5:]}",
                "status": "completed",
                "role": "assistant",
                "content": [part],
            }
        )
    for index, call in enumerate(message.get("tool_calls") or ()):
        function = call.get("function") or {}
        output.append(
            {
                "type": "function_call",
                "id": f"fc_{response_id[5:]}_{index}",
                "call_id": call.get("id"),
                "name": function.get("name"),
                "arguments": function.get("arguments") or "{}",
                "status": "completed",
            }
        )
    incomplete = choice.get("finish_reason") == "length"
    out = envelope(payload, response_id, model, created_at, "incomplete" if incomplete else "completed")
    if incomplete:
        out["incomplete_details"] = {"reason": "max_output_tokens"}
    out["output"] = output
    out["output_text"] = message.get("content") or ""
    out["usage"] = response_usage(result.get("usage"))
    return out
