"""Pure pieces of streaming: the upstream event decoder and the standard chunk builders.

``upstream/client.py`` feeds upstream bytes to an adapter's decoder (``Adapter.stream_decoder()``, SSE by
default), hands each decoded :class:`StreamEvent` to ``Adapter.parse_stream_event`` and forwards
the standard chunks it returns. Standard chunks are OpenAI's:

- chat: ``{"object": "chat.completion.chunk", "model", "choices": [{"index", "delta": {"role"?,
  "content"?, "tool_calls"?}, "finish_reason"}], "usage"?}``
- completions: ``{"object": "text_completion", "model", "choices": [{"index", "text",
  "finish_reason"}], "usage"?}``
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["SSEDecoder", "StreamEvent", "chat_chunk", "completions_chunk"]


@dataclass(frozen=True, slots=True)
class StreamEvent:
    data: str
    event: str | None = None


class SSEDecoder:
    """Incremental Server-Sent Events decoder (the text/event-stream format): bytes in, events out."""

    __slots__ = ("_buffer", "_data", "_event")

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[str] = []
        self._event: str | None = None

    def feed(self, chunk: bytes) -> list[StreamEvent]:
        buffer = self._buffer + chunk if self._buffer else chunk
        cut = buffer.rfind(b"\n")
        if cut < 0:
            self._buffer = buffer
            return []
        self._buffer = buffer[cut + 1 :]
        # Complete lines only, decoded at once (a newline never splits a UTF-8 character).
        text = buffer[: cut + 1].decode("utf-8")
        if "\r" in text:
            text = text.replace("\r\n", "\n")
        events: list[StreamEvent] = []
        data = self._data
        for line in text[:-1].split("\n"):
            if line.startswith("data: "):  # the common line, kept out of the general path
                data.append(line[6:])
            else:
                self._line(line, events)
                data = self._data
        return events

    def close(self) -> list[StreamEvent]:
        """Flush what is left at the end of the body (a last event without its blank line)."""
        events: list[StreamEvent] = []
        if self._buffer:
            self._line(self._buffer.rstrip(b"\r").decode("utf-8"), events)
            self._buffer = b""
        self._line("", events)
        return events

    def _line(self, line: str, events: list[StreamEvent]) -> None:
        if not line:
            if self._data:
                events.append(StreamEvent("\n".join(self._data), self._event))
            self._data, self._event = [], None
            return
        if line.startswith(":"):
            return  # a comment (keep-alive)
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value


def chat_chunk(
    model: str | None,
    *,
    index: int = 0,
    delta: dict[str, Any] | None = None,
    finish_reason: str | None = None,
    usage: dict[str, Any] | None = None,
) -> dict[str, Any]:
    chunk: dict[str, Any] = {
        "object": "chat.completion.chunk",
        "model": model,
        "choices": [{"index": index, "delta": delta or {}, "finish_reason": finish_reason}],
    }
    if usage is not None:
        chunk["usage"] = usage
    return chunk


def completions_chunk(
    model: str | None,
    *,
    index: int = 0,
    text: str = "",
    finish_reason: str | None = None,
    usage: dict[str, Any] | None = None,
) -> dict[str, Any]:
    chunk: dict[str, Any] = {
        "object": "text_completion",
        "model": model,
        "choices": [{"index": index, "text": text, "finish_reason": finish_reason}],
    }
    if usage is not None:
        chunk["usage"] = usage
    return chunk
