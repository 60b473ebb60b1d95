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

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

__all__ = [
    "CHARS_PER_TOKEN",
    "DEFAULT_COMPLETION_RESERVE",
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
    """Characters of text in a content value: a string, or a list of parts with ``text``."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        total = 0
        for part in value:
            if isinstance(part, str):
                total += len(part)
            elif isinstance(part, dict):
                text = part.get("text")
                if isinstance(text, str):
                    total += len(text)
        return total
    return 0


def estimate_prompt_tokens(payload: Mapping[str, Any]) -> int:
    """The estimated prompt tokens of a standard request (chat, completions or embeddings)."""
    messages = payload.get("messages")
    if isinstance(messages, list):
        tokens = 0
        for message in messages:
            if type(message) is dict:
                content = message.get("content")
                chars = len(content) if type(content) is str else _text_chars(content)
                # estimate_tokens, inlined: one per four characters, rounded up (0 for none)
                tokens += MESSAGE_OVERHEAD_TOKENS + (-(-chars // CHARS_PER_TOKEN) if chars > 0 else 0)
            elif isinstance(message, dict):
                tokens += MESSAGE_OVERHEAD_TOKENS + estimate_tokens(_text_chars(message.get("content")))
        return tokens
    for field in ("prompt", "input", "text"):
        value = payload.get(field)
        if value is not None:
            return estimate_tokens(_text_chars(value))
    return 0


def _choice_chars(choice: Mapping[str, Any]) -> int:
    """Characters of one choice: completions' ``text``, or a message's / delta's content and tool calls."""
    text = choice.get("text")
    chars = len(text) if isinstance(text, str) else 0
    message = choice.get("message") or choice.get("delta")
    if isinstance(message, dict):
        chars += _text_chars(message.get("content"))
        for call in message.get("tool_calls") or ():
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict):
                chars += len(function.get("name") or "") + len(function.get("arguments") or "")
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
    if not isinstance(most, int) or isinstance(most, bool) or most <= 0:
        most = DEFAULT_COMPLETION_RESERVE
    n = payload.get("n")
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        n = 1
    return most * n


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
