"""Checks shared by the request validators; each raises InvalidRequestError naming the field."""

from __future__ import annotations

from typing import Any

from gateway_server.errors import InvalidRequestError

_NUMBER = (int, float)


def fail(field: str, expected: str) -> InvalidRequestError:
    return InvalidRequestError(f"Invalid value for '{field}': expected {expected}.", param=field)


def check_number(
    payload: dict[str, Any], field: str, low: float | None = None, high: float | None = None
) -> None:
    value = payload.get(field)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, _NUMBER):
        raise fail(field, _range_text("a number", low, high))
    if (low is not None and value < low) or (high is not None and value > high):
        raise fail(field, _range_text("a number", low, high))


def check_int(payload: dict[str, Any], field: str, low: int | None = None, high: int | None = None) -> None:
    value = payload.get(field)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise fail(field, _range_text("an integer", low, high))
    if (low is not None and value < low) or (high is not None and value > high):
        raise fail(field, _range_text("an integer", low, high))


def check_bool(payload: dict[str, Any], field: str) -> None:
    value = payload.get(field)
    if value is not None and not isinstance(value, bool):
        raise fail(field, "true or false")


def check_stop(payload: dict[str, Any]) -> None:
    stop = payload.get("stop")
    if stop is None or isinstance(stop, str):
        return
    if not isinstance(stop, list) or not stop or not all(isinstance(s, str) for s in stop):
        raise fail("stop", "a string or a non-empty list of strings")


def _range_text(kind: str, low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f"{kind} from {low} to {high}"
    if low is not None:
        return f"{kind} >= {low}"
    if high is not None:
        return f"{kind} <= {high}"
    return kind


def check_common(payload: dict[str, Any]) -> None:
    """Parameters every generating route type shares (chat and completions)."""
    if "candidate_count" in payload:  # seed-era name of OpenAI's ``n``
        if "n" in payload:
            raise InvalidRequestError(
                "Give either 'n' or 'candidate_count', not both.", param="candidate_count"
            )
        check_int(payload, "candidate_count", 1, 128)  # errors name the field the caller sent
        payload["n"] = payload.pop("candidate_count")
    check_int(payload, "n", 1, 128)
    check_number(payload, "temperature", 0, 2)
    check_number(payload, "top_p", 0, 1)
    check_int(payload, "max_tokens", 1)
    check_int(payload, "max_completion_tokens", 1)
    check_number(payload, "presence_penalty", -2, 2)
    check_number(payload, "frequency_penalty", -2, 2)
    check_bool(payload, "stream")
    check_stop(payload)


def usage_metadata(result: dict[str, Any], route_type: str) -> dict[str, Any]:
    usage = result.get("usage") or {}
    return {
        "input_tokens": usage.get("prompt_tokens"),
        "output_tokens": usage.get("completion_tokens"),
        "total_tokens": usage.get("total_tokens"),
        "model": result.get("model"),
        "route_type": route_type,
    }
