"""``fake``: an in-process, offline, deterministic provider for the quick-start, demos and tests.

It answers every route type without any network: chat and completions echo the input in a
fixed sentence, embeddings are unit vectors derived from a hash of each text. Same input, same
output, on every machine.
"""

from __future__ import annotations

import hashlib
import math
import struct
from typing import Any

from pydantic import Field

from gateway_server.errors import InvalidRequestError
from gateway_server.providers.base import Adapter, ProviderConfig
from gateway_server.providers.streaming import chat_chunk, completions_chunk
from gateway_server.routes import RouteType

__all__ = ["FakeAdapter", "FakeConfig", "fake_embedding"]


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


class FakeAdapter(Adapter):
    name = "fake"
    display_name = "Fake (offline)"
    config_model = FakeConfig
    route_types = frozenset(RouteType)
    streaming_route_types = frozenset({RouteType.CHAT, RouteType.COMPLETIONS})
    in_process = True
    origin = "in-process"
    config: FakeConfig

    def respond(self, route_type: RouteType, payload: dict[str, Any]) -> dict[str, Any]:
        n = payload.get("n") or 1
        if route_type is RouteType.CHAT:
            messages = payload["messages"]
            last = next((m for m in reversed(messages) if m.get("role") == "user"), messages[-1])
            prompt_text = " ".join(_message_text(m.get("content")) for m in messages)
            answer = f"{self.config.reply_prefix} {_message_text(last.get('content'))}"
            answer, finish = self._truncate(answer, payload.get("max_tokens"))
            choices = [
                {"index": i, "message": {"role": "assistant", "content": answer}, "finish_reason": finish}
                for i in range(n)
            ]
            return self._envelope("chat.completion", choices, prompt_text, answer, n)
        if route_type is RouteType.COMPLETIONS:
            prompt = payload["prompt"]
            prompt_text = prompt if isinstance(prompt, str) else " ".join(map(str, prompt))
            answer, finish = self._truncate(
                f"{self.config.reply_prefix} {prompt_text}", payload.get("max_tokens")
            )
            choices = [{"index": i, "text": answer, "finish_reason": finish} for i in range(n)]
            return self._envelope("text_completion", choices, prompt_text, answer, n)
        texts = payload["input"]
        if isinstance(texts, str):
            texts = [texts]
        if not all(isinstance(t, str) for t in texts):
            raise InvalidRequestError(
                "the fake provider embeds text only: 'input' must be a string or list of strings"
            )
        tokens = sum(_tokens(t) for t in texts)
        return {
            "object": "list",
            "model": self.model_name,
            "data": [
                {
                    "object": "embedding",
                    "index": i,
                    "embedding": fake_embedding(t, self.config.embedding_dimensions),
                }
                for i, t in enumerate(texts)
            ],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    def respond_stream(self, route_type: RouteType, payload: dict[str, Any]) -> list[dict[str, Any]]:
        """The same answer as :meth:`respond`, one word a chunk; usage rides on the last chunk."""
        self.check_streaming(route_type)  # refuses embeddings like a real provider
        whole = self.respond(route_type, payload)
        chunks: list[dict[str, Any]] = []
        for choice in whole["choices"]:
            index = choice["index"]
            if route_type is RouteType.CHAT:
                words = (choice["message"]["content"] or "").split(" ")
                chunks.append(
                    chat_chunk(self.model_name, index=index, delta={"role": "assistant", "content": ""})
                )
                chunks.extend(
                    chat_chunk(self.model_name, index=index, delta={"content": w if i == 0 else f" {w}"})
                    for i, w in enumerate(words)
                )
                chunks.append(chat_chunk(self.model_name, index=index, finish_reason=choice["finish_reason"]))
            else:
                words = choice["text"].split(" ")
                chunks.extend(
                    completions_chunk(self.model_name, index=index, text=w if i == 0 else f" {w}")
                    for i, w in enumerate(words)
                )
                chunks.append(
                    completions_chunk(self.model_name, index=index, finish_reason=choice["finish_reason"])
                )
        chunks[-1]["usage"] = whole["usage"]
        return chunks

    @staticmethod
    def _truncate(answer: str, max_tokens: int | None) -> tuple[str, str]:
        words = answer.split()
        if max_tokens is not None and len(words) > max_tokens:
            return " ".join(words[:max_tokens]), "length"
        return answer, "stop"

    def _envelope(
        self, obj: str, choices: list[dict[str, Any]], prompt: str, answer: str, n: int
    ) -> dict[str, Any]:
        prompt_tokens, completion_tokens = _tokens(prompt), _tokens(answer) * n
        return {
            "object": obj,
            "model": self.model_name,
            "choices": choices,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
