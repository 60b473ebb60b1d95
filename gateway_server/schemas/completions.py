"""``llm/v1/completions``: request checks and the seed-era response shape."""

from __future__ import annotations

from typing import Any

from gateway_server.errors import InvalidRequestError
from gateway_server.schemas.common import check_common, fail, usage_metadata


def validate_request(payload: dict[str, Any]) -> dict[str, Any]:
    prompt = payload.get("prompt")
    if prompt is None:
        raise InvalidRequestError(
            "Missing 'prompt': a completions request needs a 'prompt' string.", param="prompt"
        )
    if not isinstance(prompt, str) and not (
        isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt)
    ):
        raise fail("prompt", "a string (or a non-empty list of strings)")
    check_common(payload)
    return payload


def to_legacy(result: dict[str, Any]) -> dict[str, Any]:
    return {
        "candidates": [
            {"text": choice.get("text"), "metadata": {"finish_reason": choice.get("finish_reason")}}
            for choice in result["choices"]
        ],
        "metadata": usage_metadata(result, "llm/v1/completions"),
    }
