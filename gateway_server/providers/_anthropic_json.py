"""OpenAI ``response_format`` (JSON answers) for Anthropic, through forced tool use.

The Messages API has no JSON mode, so the gateway offers the model exactly one tool,
:data:`JSON_TOOL`, whose ``input_schema`` is the requested schema (``json_schema``) or any object
(``json_object``), and forces it with ``tool_choice: {"type": "tool", "name": JSON_TOOL,
"disable_parallel_tool_use": true}``: the answer is that one call's ``input``. ``anthropic.py``
turns the call back into the assistant message's ``content`` (a JSON string, finish reason
``stop``), and in a stream turns its ``input_json_delta`` fragments into content deltas.

The answer is recognised by the tool's name alone (the parse side does not see the request), so
the name is reserved: a caller tool of that name is refused. Refused with a 400, because they
cannot work: ``response_format`` with caller ``tools`` or ``tool_choice`` (the one tool slot is
taken), with extended ``thinking`` (Anthropic refuses forced tool use with thinking on), and a
schema whose root is not ``{"type": "object"}`` (a tool's input is always an object).
``json_schema.strict`` is accepted but not enforced upstream: the schema guides the model.
"""

from __future__ import annotations

from typing import Any

from gateway_server.errors import InvalidRequestError

__all__ = ["JSON_TOOL", "json_tool_choice", "response_format_tool"]

JSON_TOOL = "gateway_json_answer"
_DESCRIPTION = (
    "Give your whole answer by calling this tool once: its input is the answer, as a JSON object "
    "that follows the input schema."
)


def response_format_tool(payload: dict[str, Any], provider: str) -> dict[str, Any] | None:
    """The one Anthropic tool that carries a JSON answer, or None for text answers."""
    response_format = payload.get("response_format")
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if response_format is None or kind == "text":
        return None
    if kind == "json_object":
        schema: Any = {"type": "object"}
        description = None
    elif kind == "json_schema":
        spec = response_format.get("json_schema")
        if not isinstance(spec, dict):
            raise InvalidRequestError(
                'Missing \'response_format.json_schema\': expected {"name", "schema", ...}.',
                param="response_format.json_schema",
            )
        schema = spec.get("schema") or {"type": "object"}
        description = spec.get("description")
        if not isinstance(schema, dict) or schema.get("type") != "object":
            raise InvalidRequestError(
                f"Invalid value for 'response_format.json_schema.schema': the {provider} provider answers "
                'JSON through a tool whose input is an object, so the schema\'s root must be {"type": '
                '"object", ...}; wrap other values in a property.',
                param="response_format.json_schema.schema",
            )
    else:
        raise InvalidRequestError(
            "Invalid value for 'response_format': expected type text, json_object or json_schema.",
            param="response_format",
        )
    _refuse_conflicts(payload, provider)
    return {
        "name": JSON_TOOL,
        "description": description if isinstance(description, str) and description else _DESCRIPTION,
        "input_schema": schema,
    }


def json_tool_choice() -> dict[str, Any]:
    return {"type": "tool", "name": JSON_TOOL, "disable_parallel_tool_use": True}


def _refuse_conflicts(payload: dict[str, Any], provider: str) -> None:
    for key in ("tools", "tool_choice"):
        if payload.get(key):
            raise InvalidRequestError(
                f"The {provider} provider answers a JSON 'response_format' through a tool of its own, so "
                f"'{key}' cannot be combined with it; send one or the other.",
                param=key,
            )
    thinking = payload.get("thinking")
    if thinking is not None and not (isinstance(thinking, dict) and thinking.get("type") == "disabled"):
        raise InvalidRequestError(
            f"The {provider} provider answers a JSON 'response_format' through forced tool use, which "
            "Anthropic does not allow with extended thinking; remove 'thinking' or 'response_format'.",
            param="thinking",
        )
