"""What an answer used, in tokens and dollars: pure functions shared by limits, budgets, metrics and logs.

Every answer the gateway returns is in the standard (OpenAI) shape, so one reader serves every
provider and path family:

- a whole answer: ``usage.prompt_tokens`` / ``usage.completion_tokens`` (:func:`usage_of`);
- a stream: the final chunk's ``usage`` (every adapter puts the upstream's figures there, and the
  OpenAI adapter asks for them with ``stream_options.include_usage``). :class:`StreamUsage` watches
  each chunk as it is forwarded and keeps the last ``usage`` it saw, plus the characters of text
  that went by, for the estimate below.

**The estimate, where a provider reports nothing** (MLflow model serving, a TGI server without
``details``, a stream cut before its last chunk, a provider that sends ``null``): one token per
four characters of text, rounded up (OpenAI's own rule of thumb for English), plus
:data:`MESSAGE_OVERHEAD_TOKENS` per chat message (role and separators). Prompt text is every
``content`` string (and text part) of ``messages``, ``prompt``, or ``input``/``text`` for
embeddings; completion text is every choice's content, text, tool-call arguments, or the deltas of
a stream. An estimated count is flagged (:attr:`Usage.estimated`) so logs can say so. The same
rule sizes what a request may use at most, for reserving a budget at admission
(:func:`admission_estimate`): its prompt estimate plus its ``max_tokens`` (or
:data:`DEFAULT_COMPLETION_RESERVE` when it gives none), times ``n``.

Answers and requests are JSON objects decoded by orjson, so the checks here test ``dict`` (an
``isinstance`` against the ``Mapping`` ABC costs several times more, on every request).

**Cost** is ``(prompt * input + completion * output) / 1,000,000`` with the model's
``price: {input, output}`` in USD per million tokens (:func:`cost_usd`); a model without a price
costs 0.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson

__all__ = [
    "CHARS_PER_TOKEN",
    "DEFAULT_COMPLETION_RESERVE",
    "IMAGE_TOKENS",
    "MESSAGE_OVERHEAD_TOKENS",
    "Price",
    "StreamUsage",
    "Usage",
    "admission_estimate",
    "completion_reserve",
    "cost_usd",
    "estimate_completion_tokens",
    "estimate_prompt_tokens",
    "estimate_tokens",
    "usage_of",
]

CHARS_PER_TOKEN = 4
MESSAGE_OVERHEAD_TOKENS = 4
# An image, audio or file part of a prompt: what a 1024 x 1024 image costs at OpenAI's high detail
# (the size is not known without decoding it; a reservation errs on the high side).
IMAGE_TOKENS = 765
_MEDIA_PARTS = frozenset(
    ("image_url", "image", "input_image", "input_audio", "audio", "file", "input_file", "document")
)
# Reserved at admission for a request without max_tokens: a long chat answer. Settled to the
# actual figure when the answer is in, so this bounds only how far concurrent requests overshoot.
DEFAULT_COMPLETION_RESERVE = 1024


@dataclass(frozen=True, slots=True)
class Price:
    """USD per one million tokens, for prompt (``input``) and completion (``output``) tokens."""

    input: float = 0.0
    output: float = 0.0


class Usage(NamedTuple):
    """What one answer used. A named tuple, not a frozen dataclass: one is made per request, and a
    tuple is built in one step where a frozen dataclass sets each field through ``object.__setattr__``."""

    prompt: int = 0
    completion: int = 0
    estimated: bool = False  # at least one of the figures is the 4-characters-a-token estimate

    @property
    def total(self) -> int:
        return self.prompt + self.completion

    def cost(self, price: Price | None) -> float:
        return cost_usd(self.prompt, self.completion, price)


def cost_usd(prompt: int, completion: int, price: Price | None) -> float:
    """Dollars for ``prompt`` and ``completion`` tokens at ``price`` (0 without a price)."""
    if price is None:
        return 0.0
    return (prompt * price.input + completion * price.output) / 1_000_000


# ---------------------------------------------------------------- estimates


def estimate_tokens(chars: int) -> int:
    """Tokens for ``chars`` characters of text: one per four, rounded up."""
    return -(-chars // CHARS_PER_TOKEN) if chars > 0 else 0


def _text_chars(value: Any) -> int:
    """Characters of text in a content value: a string, or a list of parts (OpenAI's, Anthropic's
    and the Responses API's): a part's ``text``, a nested ``content`` (a tool result), a tool
    call's or tool use's arguments; :data:`IMAGE_TOKENS` for an image or file part."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        total = 0
        for part in value:
            if isinstance(part, str):
                total += len(part)
            elif isinstance(part, dict):
                total += _part_chars(part)
        return total
    return 0


def _part_chars(part: dict[str, Any]) -> int:
    text = part.get("text")
    if isinstance(text, str):
        return len(text)
    kind = part.get("type")
    if kind in _MEDIA_PARTS:
        return IMAGE_TOKENS * CHARS_PER_TOKEN
    chars = _text_chars(part.get("content"))  # a tool result (Anthropic), an input message (Responses)
    for field in ("input", "arguments"):  # a tool use (Anthropic), a function call (Responses)
        value = part.get(field)
        if value is not None:
            chars += len(value) if isinstance(value, str) else _json_chars(value)
    return chars


def _message_chars(message: dict[str, Any]) -> int:
    """A chat message's characters beyond a plain string content: parts, tool calls."""
    chars = _text_chars(message.get("content"))
    for call in message.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            chars += len(function.get("name") or "") + len(str(function.get("arguments") or ""))
    return chars


def estimate_prompt_tokens(payload: Mapping[str, Any]) -> int:
    """The estimated prompt tokens of a request: chat ``messages`` (with their parts and tool
    calls), completions' ``prompt``, embeddings' or the Responses API's ``input``, and what else
    the model reads: ``system`` (Anthropic), ``instructions`` (Responses), ``tools`` (their JSON)."""
    messages = payload.get("messages")
    tokens = 0
    if isinstance(messages, list):
        for message in messages:
            if isinstance(message, dict):
                content = message.get("content")
                if type(content) is str and "tool_calls" not in message:  # the common case
                    chars = len(content)
                else:
                    chars = _message_chars(message)
                # estimate_tokens, inlined: one per four characters, rounded up (0 for none)
                tokens += MESSAGE_OVERHEAD_TOKENS + (-(-chars // CHARS_PER_TOKEN) if chars > 0 else 0)
    else:
        for field in ("prompt", "input", "text"):
            value = payload.get(field)
            if value is not None:
                tokens = estimate_tokens(_text_chars(value))
                break
    if "tools" in payload or "system" in payload or "instructions" in payload:
        tokens += _extra_tokens(payload)
    return tokens


def _extra_tokens(payload: Mapping[str, Any]) -> int:
    chars = _text_chars(payload.get("system")) + _text_chars(payload.get("instructions"))
    tools = payload.get("tools")
    if tools:
        chars += _json_chars(tools)
    return estimate_tokens(chars)


def _json_chars(value: Any) -> int:
    """Characters of ``value`` as JSON (tool definitions, a tool call's input)."""
    with contextlib.suppress(TypeError):  # not JSON-able (an integer past 64 bits): not counted
        return len(orjson.dumps(value))
    return 0


def _choice_chars(choice: Mapping[str, Any]) -> int:
    """Characters of one choice: completions' ``text``, or a message's / delta's content and tool calls."""
    text = choice.get("text")
    chars = len(text) if isinstance(text, str) else 0
    message = choice.get("message") or choice.get("delta")
    if isinstance(message, dict):
        chars += _message_chars(message)
    return chars


def estimate_completion_tokens(answer: Mapping[str, Any]) -> int:
    """The estimated completion tokens of a standard answer or chunk (its choices' text)."""
    return estimate_tokens(
        sum(_choice_chars(c) for c in answer.get("choices") or () if isinstance(c, dict))
    )


def admission_estimate(payload: Mapping[str, Any]) -> int:
    """The most tokens a request is expected to use: what a budget reserves before the call."""
    return estimate_prompt_tokens(payload) + completion_reserve(payload)


def completion_reserve(payload: Mapping[str, Any], embeddings: bool | None = None) -> int:
    """The completion part of :func:`admission_estimate`: ``max_tokens`` (``max_completion_tokens``,
    the Responses API's ``max_output_tokens``; else the default) x ``n``. ``embeddings``: whether the
    route embeds (no completion); told by the caller who knows the route, else guessed from the
    shape (a body with neither ``messages`` nor ``prompt``: a Responses API body looks the same)."""
    if embeddings if embeddings is not None else ("messages" not in payload and "prompt" not in payload):
        return 0
    most = payload.get("max_tokens") or payload.get("max_completion_tokens") or payload.get("max_output_tokens")
    if type(most) is not int or most <= 0:  # (a bool is not an int here: type, not isinstance)
        most = DEFAULT_COMPLETION_RESERVE
    n = payload.get("n")
    if n is None:
        return most
    return most * n if type(n) is int and n > 1 else most


# ---------------------------------------------------------------- actual figures


def _count(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or math.isnan(value):
        return None
    return int(value)


def _figures(usage: Any) -> tuple[int | None, int | None]:
    if not isinstance(usage, dict):
        return None, None
    prompt = _count(usage.get("prompt_tokens"))
    completion = _count(usage.get("completion_tokens"))
    if completion is None:
        total = _count(usage.get("total_tokens"))
        if total is not None and prompt is not None:
            completion = max(0, total - prompt)
    return prompt, completion


def usage_of(answer: Mapping[str, Any], payload: Mapping[str, Any]) -> Usage:
    """What a whole standard answer used: its ``usage``, estimated where a figure is missing.

    Embeddings have no completion (``total_tokens`` = ``prompt_tokens``)."""
    usage = answer.get("usage")
    if type(usage) is dict:  # the common case first: both figures, plain non-negative ints
        prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
        if type(prompt) is int and type(completion) is int and prompt >= 0 and completion >= 0:
            if "choices" in answer or "data" not in answer:
                return Usage(prompt, completion, False)
            return Usage(prompt, 0, False)  # embeddings
    return _usage_slow(answer, payload)


def _usage_slow(answer: Mapping[str, Any], payload: Mapping[str, Any]) -> Usage:
    prompt, completion = _figures(answer.get("usage"))
    embeddings = "data" in answer and "choices" not in answer
    estimated = False
    if prompt is None:
        prompt, estimated = estimate_prompt_tokens(payload), True
    if embeddings:
        completion = 0
    elif completion is None:
        completion, estimated = estimate_completion_tokens(answer), True
    return Usage(prompt, completion, estimated)


class StreamUsage:
    """Follows a stream's chunks: the last ``usage`` seen, and the text that went by (estimate).

    Call it on every chunk as it is forwarded (a few attribute reads a chunk); :meth:`result` at
    the end, whether the stream finished, failed or the client left."""

    __slots__ = ("_chars", "_usage")

    def __init__(self) -> None:
        self._usage: Any = None
        self._chars = 0

    def __call__(self, chunk: Mapping[str, Any]) -> None:
        usage = chunk.get("usage")
        if usage is not None:
            self._usage = usage
        for choice in chunk.get("choices") or ():
            if isinstance(choice, dict):
                self._chars += _choice_chars(choice)

    def result(self, payload: Mapping[str, Any]) -> Usage:
        prompt, completion = _figures(self._usage)
        estimated = False
        if prompt is None:
            prompt, estimated = estimate_prompt_tokens(payload), True
        if completion is None:
            completion, estimated = estimate_tokens(self._chars), True
        return Usage(prompt, completion, estimated)
