"""``fake``: an offline, deterministic provider for the quick-start, demos and tests.

It answers every route type without any network: chat and completions echo the input in a
fixed sentence, embeddings are unit vectors derived from a hash of each text. Same input, same
output, on every machine.

It is an ordinary adapter speaking OpenAI's wire format to :data:`FAKE_ORIGIN`, an upstream that
lives inside the process (``upstream/in_process.py`` serves it with :func:`answer` and
:func:`answer_stream`, the pure functions below). So the fake goes through the same client,
reliability loop, error mapping and stream parsing as every real provider.
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Iterable
from typing import Any, ClassVar
from urllib.parse import quote, unquote

import orjson
from pydantic import Field

from gateway_server.providers.base import ProviderConfig
from gateway_server.providers.openai import OpenAIWire, OpenAIWireAdapter
from gateway_server.providers.streaming import chat_chunk, completions_chunk
from gateway_server.routes import RouteType

__all__ = ["FAKE_ORIGIN", "FakeAdapter", "FakeConfig", "answer", "answer_stream", "fake_embedding"]

FAKE_ORIGIN = "in-process://fake"  # served by upstream/in_process.py; no socket, no network
_CONFIG_HEADER = "x-fake-config"


class FakeConfig(ProviderConfig):
    reply_prefix: str = "This is the fake provider answering:"
    embedding_dimensions: int = Field(default=8, ge=1, le=4096)


def _tokens(text: str) -> int:
    return len(text.split())


def fake_embedding(text: str, dimensions: int) -> list[float]:
    """A deterministic unit vector for ``text``."""
    raw = b""
    counter = 0
    while len(raw) < dimensions * 4:
        raw += hashlib.sha256(f"{counter}:{text}".encode()).digest()
        counter += 1
    values = [v / 2**32 - 0.5 for v in struct.unpack(f"<{dimensions}I", raw[: dimensions * 4])]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [round(v / norm, 6) for v in values]


def _message_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts
        return " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


class FakeAdapter(OpenAIWireAdapter, provider="fake"):
    config_model: ClassVar[type[ProviderConfig]] = FakeConfig
    config: FakeConfig

    def openai_wire(self) -> OpenAIWire:
        # The fake's settings travel with each request, as a real upstream's account settings would
        # live upstream: percent-encoded JSON, so any reply prefix fits in a header.
        settings = quote(orjson.dumps(self.config.model_dump()).decode())
        return OpenAIWire.at(f"{FAKE_ORIGIN}/v1", {_CONFIG_HEADER: settings})


def read_fake_config(headers: Iterable[tuple[bytes, bytes]]) -> FakeConfig:
    """The :class:`FakeConfig` a request carries (ASGI headers), or the defaults."""
    for name, value in headers:
        if name == _CONFIG_HEADER.encode():
            return FakeConfig.model_validate(orjson.loads(unquote(value.decode("latin-1"))))
    return FakeConfig()


def answer(route_type: RouteType, request: dict[str, Any], config: FakeConfig) -> dict[str, Any]:
    """The fake upstream's answer to an OpenAI-shaped ``request`` (ValueError: a 400)."""
    model = request.get("model")
    n = request.get("n") or 1
    if route_type is RouteType.CHAT:
        messages = request["messages"]
        last = next((m for m in reversed(messages) if m.get("role") == "user"), messages[-1])
        prompt_text = " ".join(_message_text(m.get("content")) for m in messages)
        reply, finish = _truncate(f"{config.reply_prefix} {_message_text(last.get('content'))}", request.get("max_tokens"))
        choices = [
            {"index": i, "message": {"role": "assistant", "content": reply}, "finish_reason": finish}
            for i in range(n)
        ]
        return _envelope("chat.completion", model, choices, prompt_text, reply, n)
    if route_type is RouteType.COMPLETIONS:
        prompt = request["prompt"]
        prompt_text = prompt if isinstance(prompt, str) else " ".join(map(str, prompt))
        reply, finish = _truncate(f"{config.reply_prefix} {prompt_text}", request.get("max_tokens"))
        choices = [{"index": i, "text": reply, "finish_reason": finish} for i in range(n)]
        return _envelope("text_completion", model, choices, prompt_text, reply, n)
    texts = request["input"]
    if isinstance(texts, str):
        texts = [texts]
    if not all(isinstance(t, str) for t in texts):
        raise ValueError("the fake provider embeds text only: 'input' must be a string or list of strings")
    tokens = sum(_tokens(t) for t in texts)
    return {
        "object": "list",
        "model": model,
        "data": [
            {"object": "embedding", "index": i, "embedding": fake_embedding(t, config.embedding_dimensions)}
            for i, t in enumerate(texts)
        ],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def answer_stream(route_type: RouteType, request: dict[str, Any], config: FakeConfig) -> list[dict[str, Any]]:
    """The same answer as :func:`answer`, one word a chunk; usage rides on the last chunk."""
    model = request.get("model")
    whole = answer(route_type, request, config)
    chunks: list[dict[str, Any]] = []
    for choice in whole["choices"]:
        index = choice["index"]
        if route_type is RouteType.CHAT:
            words = (choice["message"]["content"] or "").split(" ")
            chunks.append(chat_chunk(model, index=index, delta={"role": "assistant", "content": ""}))
            chunks.extend(
                chat_chunk(model, index=index, delta={"content": w if i == 0 else f" {w}"})
                for i, w in enumerate(words)
            )
            chunks.append(chat_chunk(model, index=index, finish_reason=choice["finish_reason"]))
        else:
            words = choice["text"].split(" ")
            chunks.extend(
                completions_chunk(model, index=index, text=w if i == 0 else f" {w}") for i, w in enumerate(words)
            )
            chunks.append(completions_chunk(model, index=index, finish_reason=choice["finish_reason"]))
    chunks[-1]["usage"] = whole["usage"]
    return chunks


def _truncate(reply: str, max_tokens: int | None) -> tuple[str, str]:
    words = reply.split()
    if max_tokens is not None and len(words) > max_tokens:
        return " ".join(words[:max_tokens]), "length"
    return reply, "stop"


def _envelope(
    obj: str, model: str | None, choices: list[dict[str, Any]], prompt: str, reply: str, n: int
) -> dict[str, Any]:
    prompt_tokens, completion_tokens = _tokens(prompt), _tokens(reply) * n
    return {
        "object": obj,
        "model": model,
        "choices": choices,
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }
