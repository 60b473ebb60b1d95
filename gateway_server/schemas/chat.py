"""``llm/v1/chat``: request checks and the seed-era response shape."""

from __future__ import annotations

from typing import Any

from gateway_server.errors import InvalidRequestError
from gateway_server.schemas.common import check_common, fail, usage_metadata

ROLES = frozenset({"system", "user", "assistant", "tool", "developer", "function"})


def validate_request(payload: dict[str, Any]) -> dict[str, Any]:
    messages = payload.get("messages")
    if messages is None:
        raise InvalidRequestError(
            'Missing \'messages\': a chat request needs a list of {"role", "content"} messages.',
            param="messages",
        )
    if not isinstance(messages, list) or not messages:
        raise fail("messages", 'a non-empty list of {"role", "content"} objects')
    for index, message in enumerate(messages):
        _check_message(index, message)
    check_common(payload)
    tools = payload.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise fail("tools", "a list of tool definitions")
    return payload


def _check_message(index: int, message: Any) -> None:
    field = f"messages[{index}]"
    if not isinstance(message, dict):
        raise fail(field, "an object with 'role' and 'content'")
    role = message.get("role")
    if not isinstance(role, str):
        raise fail(f"{field}.role", f"one of {', '.join(sorted(ROLES))}")
    if role not in ROLES:
        raise fail(f"{field}.role", f"one of {', '.join(sorted(ROLES))}")
    content = message.get("content")
    if content is None:
        if role == "assistant" and message.get("tool_calls"):
            return
        raise InvalidRequestError(f"Missing '{field}.content'.", param=f"{field}.content")
    if not isinstance(content, (str, list)):
        raise fail(f"{field}.content", "a string or a list of content parts")


def to_legacy(result: dict[str, Any]) -> dict[str, Any]:
    return {
        "candidates": [
            {
                "message": {
                    "role": choice["message"].get("role", "assistant"),
                    "content": choice["message"].get("content"),
                },
                "metadata": {"finish_reason": choice.get("finish_reason")},
            }
            for choice in result["choices"]
        ],
        "metadata": usage_metadata(result, "llm/v1/chat"),
    }
