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

from gateway_server.routes import RouteType

__all__ = [
    "MAX_EVENT_BYTES",
    "SSEDecoder",
    "StreamEvent",
    "StreamEventTooLarge",
    "answer_chunks",
    "chat_chunk",
    "completions_chunk",
]


@dataclass(frozen=True, slots=True)
class StreamEvent:
    data: str
    event: str | None = None


# The largest stream event the gateway holds while waiting for its end, in bytes. An upstream's
# event this large is a fault (the biggest real ones, a whole tool call's arguments, are far below).
MAX_EVENT_BYTES = 16 * 1024 * 1024


class StreamEventTooLarge(ValueError):
    """An upstream stream event grew past ``MAX_EVENT_BYTES`` without ending."""


class SSEDecoder:
    """Incremental Server-Sent Events decoder (the text/event-stream format): bytes in, events out.

    An unfinished line is kept as a list of pieces (joined once its newline arrives, so a long line
    costs one copy, not one per read) and an unfinished event may hold at most ``max_event_bytes``;
    beyond that :class:`StreamEventTooLarge`. Bytes that are not UTF-8 raise ``UnicodeDecodeError``.
    """

    __slots__ = ("_data", "_event", "_parts", "_pending", "max_event_bytes")

    def __init__(self, max_event_bytes: int = MAX_EVENT_BYTES) -> None:
        self._parts: list[bytes] = []  # the unfinished line, in pieces
        self._pending = 0  # their length
        self._data: list[str] = []
        self._event: str | None = None
        self.max_event_bytes = max_event_bytes

    def feed(self, chunk: bytes) -> list[StreamEvent]:
        cut = chunk.rfind(b"\n")
        if cut < 0:
            self._parts.append(chunk)
            self._pending += len(chunk)
            if self._pending > self.max_event_bytes:
                raise self._too_large()
            return []
        if self._parts:
            self._parts.append(chunk[: cut + 1])
            lines = b"".join(self._parts)
        else:
            lines = chunk[: cut + 1] if cut + 1 < len(chunk) else chunk
        rest = chunk[cut + 1 :]
        self._parts = [rest] if rest else []
        self._pending = len(rest)
        # Complete lines only, decoded at once (a newline never splits a UTF-8 character).
        text = lines.decode("utf-8")
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
        if data and sum(map(len, data)) + self._pending > self.max_event_bytes:  # an event spanning reads
            raise self._too_large()
        return events

    def _too_large(self) -> StreamEventTooLarge:
        return StreamEventTooLarge(
            f"a stream event grew past {self.max_event_bytes} bytes without ending, the most the gateway holds"
        )

    def close(self) -> list[StreamEvent]:
        """Flush what is left at the end of the body (a last event without its blank line)."""
        events: list[StreamEvent] = []
        if self._parts:
            self._line(b"".join(self._parts).rstrip(b"\r").decode("utf-8"), events)
            self._parts, self._pending = [], 0
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


def answer_chunks(route_type: RouteType, answer: dict[str, Any]) -> list[dict[str, Any]]:
    """A whole standard answer (chat.completion or text_completion) as the stream chunks that say
    the same: one chunk per choice with its whole content, then the usage. Used when an upstream
    answers a stream request with plain JSON (some servers ignore ``"stream": true``)."""
    model = answer.get("model")
    chat = route_type is RouteType.CHAT
    chunks = []
    for position, choice in enumerate(answer.get("choices") or ()):
        index = choice.get("index", position)
        finish = choice.get("finish_reason")
        if chat:
            message = choice.get("message") or {}
            delta = {key: value for key, value in message.items() if value is not None}
            delta.setdefault("role", "assistant")
            if "tool_calls" in delta:
                delta["tool_calls"] = [{"index": i, **call} for i, call in enumerate(delta["tool_calls"])]
            chunks.append(chat_chunk(model, index=index, delta=delta, finish_reason=finish))
        else:
            chunks.append(
                completions_chunk(model, index=index, text=choice.get("text") or "", finish_reason=finish)
            )
    if answer.get("usage") is not None:
        kind = "chat.completion.chunk" if chat else "text_completion"
        chunks.append({"object": kind, "model": model, "choices": [], "usage": answer["usage"]})
    for chunk in chunks:
        for key in ("id", "created"):
            if answer.get(key):
                chunk[key] = answer[key]
    return chunks
