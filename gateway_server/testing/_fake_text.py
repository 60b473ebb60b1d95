"""Text rules shared by the vendor fakes (a "token" is a whitespace-separated word, as in FakeOpenAI).

:func:`truncate` applies stop sequences and then a token limit, and says why the text ended, so each
fake can report that in its own vocabulary (``stop_sequence``/``max_tokens``, ``STOP_SEQUENCE``/
``MAX_TOKENS``, ...). :func:`words` splits a text into the pieces the fakes stream one by one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gateway_server.testing.fake_openai import count_tokens, fake_embedding

__all__ = ["Ending", "count_tokens", "fake_embedding", "truncate", "words"]

_WORD = re.compile(r"\s*\S+\s*")


@dataclass(frozen=True, slots=True)
class Ending:
    text: str
    reason: str  # "end" (natural end), "stop" (a stop sequence matched) or "length" (token limit)
    stop_sequence: str | None = None


def words(text: str) -> list[str]:
    return _WORD.findall(text)


def truncate(text: str, stops: list[str] | None, limit: int | None) -> Ending:
    for stop in stops or ():
        if stop and stop in text:
            return Ending(text[: text.index(stop)], "stop", stop)
    pieces = words(text)
    if limit is not None and len(pieces) > limit:
        return Ending("".join(pieces[:limit]).rstrip(), "length")
    return Ending(text, "end")
