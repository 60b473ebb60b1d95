"""Pure helpers for adapters whose upstream does not speak the OpenAI shapes.

The gateway's standard request is OpenAI-shaped; the Anthropic, Cohere, Mistral and Gemini adapters
translate it into their vendor's format and back. What they share lives here: refusing parameters an
upstream has no equivalent for (a 400 naming them), reading message text, tool definitions and tool
choices, serving completions through a chat API, and shaping usage. No I/O, no clock, no globals.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import urlsplit

import orjson

from gateway_server.errors import InvalidRequestError, UpstreamProtocolError
from gateway_server.providers.streaming import StreamEvent

__all__ = [
    "ToolChoice",
    "base_url",
    "chat_chunks_to_completions",
    "chat_to_completions",
    "completions_to_chat",
    "dump_arguments",
    "event_json",
    "function_tools",
    "load_arguments",
    "max_tokens_of",
    "refuse",
    "shape_error",
    "stop_list",
    "text_of",
    "tool_choice_of",
    "usage",
]

# Completions parameters that only a raw-prompt completions API has; chat APIs cannot honour them.
_COMPLETIONS_ONLY = ("echo", "best_of", "suffix", "logprobs")


def base_url(value: str) -> str:
    """Validate a provider's base-URL override (for config validators); returned without a trailing slash."""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an http:// or https:// URL, e.g. https://host/v1")
    if parts.query or parts.fragment:
        raise ValueError("must not contain a query string or a fragment")
    return value.strip().rstrip("/")


def refuse(payload: dict[str, Any], names: Iterable[str], provider: str) -> None:
    """Raise a 400 naming every parameter of ``names`` that the request sets (to a non-null value)."""
    present = [name for name in names if payload.get(name) is not None]
    if present:
        listed = ", ".join(f"'{name}'" for name in present)
        noun = "parameter" if len(present) == 1 else "parameters"
        raise InvalidRequestError(
            f"The {provider} provider does not support the {noun} {listed}; remove {'it' if len(present) == 1 else 'them'} "
            "from the request.",
            param=present[0],
        )


def text_of(content: Any, field: str) -> str:
    """The text of a message ``content``: a string, or a list of ``{"type": "text"}`` parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    texts = []
    for index, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
            raise InvalidRequestError(
                f"Invalid value for '{field}[{index}]': this provider accepts only text parts "
                '({"type": "text", "text": ...}) here.',
                param=f"{field}[{index}]",
            )
        texts.append(part["text"])
    return "".join(texts)


def stop_list(stop: Any) -> list[str] | None:
    if stop is None:
        return None
    return [stop] if isinstance(stop, str) else list(stop)


def max_tokens_of(payload: dict[str, Any]) -> int | None:
    """``max_completion_tokens`` (OpenAI's newer name) or ``max_tokens``."""
    value = payload.get("max_completion_tokens")
    return value if value is not None else payload.get("max_tokens")


def load_arguments(arguments: Any, field: str) -> dict[str, Any]:
    """A tool call's ``arguments`` (a JSON object as a string) as a dict."""
    if isinstance(arguments, dict):
        return arguments
    if arguments is None or arguments == "":
        return {}
    try:
        value = orjson.loads(arguments)
    except (orjson.JSONDecodeError, TypeError):
        value = None
    if not isinstance(value, dict):
        raise InvalidRequestError(
            f"Invalid value for '{field}': expected a JSON object encoded as a string.", param=field
        )
    return value


def dump_arguments(arguments: Any) -> str:
    """Tool-call arguments as OpenAI carries them: a compact JSON string."""
    if isinstance(arguments, str):
        return arguments
    return orjson.dumps(arguments if arguments is not None else {}).decode()


def function_tools(tools: Any) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(index, function)`` for each OpenAI tool; anything but ``{"type": "function"}`` is a 400."""
    for index, tool in enumerate(tools or ()):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(function, dict):
            raise InvalidRequestError(
                f"Invalid value for 'tools[{index}]': expected "
                '{"type": "function", "function": {"name", "description"?, "parameters"?}}.',
                param=f"tools[{index}]",
            )
        if not isinstance(function.get("name"), str) or not function["name"]:
            raise InvalidRequestError(
                f"Missing 'tools[{index}].function.name'.", param=f"tools[{index}].function.name"
            )
        yield index, function


ToolChoice = tuple[str, str | None]  # ("auto" | "none" | "required" | "function", function name)


def tool_choice_of(value: Any) -> ToolChoice | None:
    """OpenAI's ``tool_choice`` normalised: ``"auto"``, ``"none"``, ``"required"`` or a named function."""
    if value is None:
        return None
    if value in ("auto", "none", "required"):
        return (value, None)
    if isinstance(value, dict) and value.get("type") == "function":
        function = value.get("function")
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            return ("function", function["name"])
    raise InvalidRequestError(
        'Invalid value for \'tool_choice\': expected "auto", "none", "required" or '
        '{"type": "function", "function": {"name": ...}}.',
        param="tool_choice",
    )


def usage(prompt: int | None, completion: int | None, total: int | None = None) -> dict[str, Any]:
    if total is None and prompt is not None and completion is not None:
        total = prompt + completion
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total}


def event_json(event: StreamEvent, provider: str) -> Any:
    """The JSON object of one stream event; anything else is the upstream breaking its format."""
    try:
        data = orjson.loads(event.data)
    except orjson.JSONDecodeError as exc:
        raise UpstreamProtocolError(
            f"{provider} sent a stream event that is not JSON ({exc})", provider=provider
        ) from exc
    if not isinstance(data, dict):
        raise UpstreamProtocolError(
            f"{provider} sent a stream event that is a JSON {type(data).__name__}, expected an object",
            provider=provider,
        )
    return data


def shape_error(provider: str, exc: Exception) -> UpstreamProtocolError:
    """For a stream event that lacks what the provider documents (a KeyError and the like)."""
    return UpstreamProtocolError(
        f"{provider} sent a stream event the gateway cannot read ({type(exc).__name__}: {exc}); "
        "it does not have the documented shape",
        provider=provider,
    )


# ---------------------------------------------------------------- completions through a chat API


def completions_to_chat(payload: dict[str, Any], provider: str) -> dict[str, Any]:
    """A completions request as a one-message chat request (the prompt is the user's message)."""
    refuse(payload, _COMPLETIONS_ONLY, provider)
    prompt = payload.get("prompt")
    if isinstance(prompt, list):
        if len(prompt) != 1:
            raise InvalidRequestError(
                f"The {provider} provider takes one prompt per request; 'prompt' is a list of {len(prompt)}. "
                "Send one request per prompt.",
                param="prompt",
            )
        prompt = prompt[0]
    chat = {key: value for key, value in payload.items() if key != "prompt"}
    chat["messages"] = [{"role": "user", "content": prompt}]
    return chat


def chat_to_completions(result: dict[str, Any]) -> dict[str, Any]:
    """A standard chat response as a standard completions response."""
    completions = {
        "object": "text_completion",
        "model": result.get("model"),
        "choices": [
            {
                "index": choice["index"],
                "text": choice["message"].get("content") or "",
                "finish_reason": choice["finish_reason"],
            }
            for choice in result["choices"]
        ],
        "usage": result["usage"],
    }
    if "id" in result:
        completions["id"] = result["id"]
    return completions


def chat_chunks_to_completions(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Standard chat stream chunks as completions stream chunks (role-only deltas carry nothing)."""
    converted = []
    for chunk in chunks:
        choice = chunk["choices"][0]
        text = choice["delta"].get("content") or ""
        if not text and choice["finish_reason"] is None and "usage" not in chunk:
            continue
        out: dict[str, Any] = {
            "object": "text_completion",
            "model": chunk["model"],
            "choices": [{"index": choice["index"], "text": text, "finish_reason": choice["finish_reason"]}],
        }
        if "id" in chunk:
            out["id"] = chunk["id"]
        if "usage" in chunk:
            out["usage"] = chunk["usage"]
        converted.append(out)
    return converted
