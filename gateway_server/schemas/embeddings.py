"""``llm/v1/embeddings``: request checks and the seed-era response shape.

The seed's field is ``text``; OpenAI's (and MLflow 2.9+'s) is ``input``. Both are accepted on
every path and given to providers as ``input``.
"""

from __future__ import annotations

from typing import Any

from gateway_server.errors import InvalidRequestError
from gateway_server.schemas.common import fail


def validate_request(payload: dict[str, Any]) -> dict[str, Any]:
    field = "input"
    if "text" in payload:
        if "input" in payload:
            raise InvalidRequestError("Give either 'input' or 'text', not both.", param="text")
        payload["input"] = payload.pop("text")
        field = "text"  # errors name the field the caller sent
    value = payload.get("input")
    if value is None:
        raise InvalidRequestError(
            "Missing 'input' (or 'text'): an embeddings request needs a string or a list of strings.",
            param="input",
        )
    if isinstance(value, str):
        return payload
    if (
        isinstance(value, list)
        and value
        and (
            all(isinstance(v, str) for v in value)
            or all(isinstance(v, int) and not isinstance(v, bool) for v in value)
            or all(isinstance(v, list) and all(isinstance(t, int) for t in v) for v in value)
        )
    ):
        return payload
    raise fail(field, "a string, a non-empty list of strings, or token ids")


def to_legacy(result: dict[str, Any]) -> dict[str, Any]:
    usage = result.get("usage") or {}
    return {
        "embeddings": [
            item["embedding"] for item in sorted(result["data"], key=lambda item: item.get("index", 0))
        ],
        "metadata": {
            "input_tokens": usage.get("prompt_tokens"),
            "output_tokens": 0,
            "total_tokens": usage.get("total_tokens"),
            "model": result.get("model"),
            "route_type": "llm/v1/embeddings",
        },
    }
