"""Pure translation between the gateway's chat shape (OpenAI's) and Bedrock's Converse API.

Request (``ConverseRequest``): ``system`` and ``developer`` messages become ``system`` text blocks;
``user``/``assistant`` messages become content blocks (``text``, ``image`` from ``data:`` URLs,
``toolUse`` from an assistant's ``tool_calls``); ``tool`` messages become ``toolResult`` blocks of a
user message; consecutive messages of one role are merged, because Converse wants the roles to
alternate. ``max_tokens``/``temperature``/``top_p``/``stop`` go to ``inferenceConfig``, ``tools`` and
``tool_choice`` to ``toolConfig``.

Response (``ConverseResponse``): text blocks joined into ``content``, ``toolUse`` blocks into
``tool_calls`` (input serialised as the JSON string OpenAI clients expect), ``stopReason`` into
``finish_reason``, ``usage`` into OpenAI's token names.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from gateway_server.errors import InvalidRequestError
from gateway_server.providers._translate import (
    dump_arguments,
    function_tools,
    load_arguments,
    max_tokens_of,
    stop_list,
    text_of,
    tool_choice_of,
    usage,
)

__all__ = ["chat_from_converse", "converse_request", "finish_reason", "usage_from_converse"]

_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}
_IMAGE_FORMATS = {"png", "jpeg", "gif", "webp"}


def finish_reason(stop_reason: str | None) -> str:
    return _FINISH.get(stop_reason or "", "stop")


def usage_from_converse(tokens: dict[str, Any] | None) -> dict[str, Any]:
    tokens = tokens or {}
    return usage(tokens.get("inputTokens"), tokens.get("outputTokens"), tokens.get("totalTokens"))


# ---------------------------------------------------------------- request


def converse_request(payload: dict[str, Any]) -> dict[str, Any]:
    n = payload.get("n")
    if n not in (None, 1):
        raise InvalidRequestError("Bedrock's Converse API answers with one choice; 'n' must be 1.", param="n")
    system, messages = _messages(payload["messages"])
    body: dict[str, Any] = {"messages": messages}
    if system:
        body["system"] = system
    inference = {
        name: value
        for name, value in (
            ("maxTokens", max_tokens_of(payload)),
            ("temperature", payload.get("temperature")),
            ("topP", payload.get("top_p")),
            ("stopSequences", stop_list(payload.get("stop"))),
        )
        if value is not None
    }
    if inference:
        body["inferenceConfig"] = inference
    tool_config = _tool_config(payload.get("tools"), payload.get("tool_choice"))
    if tool_config:
        body["toolConfig"] = tool_config
    return body


def _messages(messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        role, field = message["role"], f"messages[{index}]"
        if role in ("system", "developer"):
            system.append({"text": text_of(message.get("content"), f"{field}.content")})
            continue
        if role == "user":
            blocks = _content(message.get("content"), field)
        elif role == "assistant":
            text = text_of(message.get("content"), f"{field}.content")
            blocks = [{"text": text}] if text else []
            blocks.extend(_tool_use(call, f"{field}.tool_calls") for call in message.get("tool_calls") or ())
        elif role == "tool":
            role = "user"
            result = {
                "toolUseId": message.get("tool_call_id", ""),
                "content": [{"text": text_of(message.get("content"), f"{field}.content")}],
            }
            blocks = [{"toolResult": result}]
        else:
            raise InvalidRequestError(
                f"Bedrock does not take '{role}' messages; use 'tool' messages for tool results.",
                param=f"{field}.role",
            )
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return system, turns


def _content(content: Any, field: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"text": content}]
    blocks = []
    for index, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            blocks.append({"text": part.get("text", "")})
        elif kind == "image_url":
            blocks.append({"image": _image(part.get("image_url") or {}, f"{field}.content[{index}]")})
        else:
            raise InvalidRequestError(
                f"Bedrock takes text and image_url content parts, not '{kind}'.",
                param=f"{field}.content[{index}]",
            )
    return blocks


def _image(image_url: dict[str, Any], field: str) -> dict[str, Any]:
    header, _, data = str(image_url.get("url", "")).partition(",")
    image_format = header.removeprefix("data:image/").removesuffix(";base64")
    if (
        not header.startswith("data:image/")
        or not header.endswith(";base64")
        or image_format not in _IMAGE_FORMATS
    ):
        raise InvalidRequestError(
            "Bedrock takes images inline: a data:image/(png|jpeg|gif|webp);base64,... URL.", param=field
        )
    try:
        base64.b64decode(data, validate=True)
    except binascii.Error as exc:
        raise InvalidRequestError(f"The image data is not valid base64 ({exc}).", param=field) from None
    return {"format": image_format, "source": {"bytes": data}}  # blobs travel base64-encoded in JSON


def _tool_use(call: dict[str, Any], field: str) -> dict[str, Any]:
    function = call.get("function") or {}
    arguments = load_arguments(function.get("arguments"), f"{field}.function.arguments")
    return {
        "toolUse": {"toolUseId": call.get("id", ""), "name": function.get("name", ""), "input": arguments}
    }


def _tool_config(tools: Any, tool_choice: Any) -> dict[str, Any] | None:
    choice = tool_choice_of(tool_choice)
    specs = []
    for _, function in function_tools(tools):
        spec: dict[str, Any] = {"name": function["name"]}
        if function.get("description"):
            spec["description"] = function["description"]
        spec["inputSchema"] = {"json": function.get("parameters") or {"type": "object", "properties": {}}}
        specs.append({"toolSpec": spec})
    if not specs or (choice is not None and choice[0] == "none"):
        return None  # Converse has no "none": offering no tools is how to forbid them
    config: dict[str, Any] = {"tools": specs}
    if choice is not None:
        kind, name = choice
        config["toolChoice"] = (
            {"auto": {}}
            if kind == "auto"
            else {"any": {}}
            if kind == "required"
            else {"tool": {"name": name}}
        )
    return config


# ---------------------------------------------------------------- response


def chat_from_converse(body: dict[str, Any], model: str | None) -> dict[str, Any]:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in body["output"]["message"]["content"]:
        if "text" in block:
            texts.append(block["text"])
        elif "toolUse" in block:
            tool = block["toolUse"]
            calls.append(
                {
                    "id": tool["toolUseId"],
                    "type": "function",
                    "function": {"name": tool["name"], "arguments": dump_arguments(tool["input"])},
                }
            )
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        message["tool_calls"] = calls
    return {
        "object": "chat.completion",
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason(body.get("stopReason"))}],
        "usage": usage_from_converse(body.get("usage")),
    }
