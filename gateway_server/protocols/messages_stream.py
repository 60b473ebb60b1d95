"""Internal chat stream chunks → Anthropic's Messages stream events (a pure state machine).

Feed it the standard chunks of one stream in order (:meth:`MessagesStream.feed`), then call
:meth:`MessagesStream.finish` when the upstream stream ends, or :meth:`MessagesStream.fail` when it
breaks; each returns the bytes to send (``event: <type>\\ndata: <json>\\n\\n`` per event). The
sequence is Anthropic's:

``message_start`` (with usage: the input tokens are the gateway's estimate, since other vendors
report usage only at the end) → per content block ``content_block_start``, its deltas
(``text_delta`` or ``input_json_delta``), ``content_block_stop`` → ``message_delta`` (``stop_reason``
and the real usage, input tokens included) → ``message_stop``. A failure after the start is one
``error`` event, after which nothing more is sent.

Blocks follow each other as in Anthropic's streams: a block is stopped when the next one starts.
Tool-call arguments split over many chunks become consecutive ``input_json_delta`` events of one
block; a late argument delta of a tool call whose block was already stopped (which OpenAI-style
streams do not send, but nothing forbids) still goes to that block's index, where the SDKs
accumulate by index.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway_server.errors import GatewayError
from gateway_server.protocols.messages import STOP_REASONS, anthropic_usage, error_type

__all__ = ["PING", "MessagesStream", "event"]

PING = b'event: ping\ndata: {"type":"ping"}\n\n'


def event(kind: str, data: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


class MessagesStream:
    """One stream's translation state. See the module docstring."""

    __slots__ = (
        "_block",
        "_blocks",
        "_finish",
        "_input_estimate",
        "_tools",
        "_usage",
        "id",
        "model",
        "started",
    )

    def __init__(self, message_id: str, model: str, input_estimate: int) -> None:
        self.id = message_id
        self.model = model
        self._input_estimate = input_estimate
        self.started = False
        self._blocks = 0  # blocks opened so far (the next block's index)
        self._block: tuple[str, int] | None = None  # the open block: ("text" | "tool", its index)
        self._tools: dict[int, int] = {}  # the chunk's tool_calls[].index → the block index
        self._finish: str | None = None
        self._usage: dict[str, Any] | None = None

    def start(self) -> bytes:
        self.started = True
        message: dict[str, Any] = {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": self._input_estimate,
                "output_tokens": 0,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
            },
        }
        return event("message_start", {"type": "message_start", "message": message})

    def feed(self, chunks: list[dict[str, Any]]) -> bytes:
        out: list[bytes] = [] if self.started else [self.start()]
        for chunk in chunks:
            if chunk.get("usage"):
                self._usage = chunk["usage"]
            for choice in chunk.get("choices") or ():
                if choice.get("index", 0) != 0:
                    continue  # one message: the first choice
                delta = choice.get("delta") or {}
                if delta.get("content"):
                    self._text(delta["content"], out)
                for call in delta.get("tool_calls") or ():
                    self._tool(call, out)
                if choice.get("finish_reason"):
                    self._finish = choice["finish_reason"]
        return b"".join(out)

    def finish(self) -> bytes:
        out: list[bytes] = [] if self.started else [self.start()]
        self._close(out)
        stop_reason = STOP_REASONS.get(self._finish or "stop", "end_turn")
        if self._tools and stop_reason == "end_turn":
            stop_reason = "tool_use"
        usage = anthropic_usage(self._usage)
        if self._usage is None:
            usage["input_tokens"] = self._input_estimate
        delta = {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": None},
            "usage": usage,
        }
        out.append(event("message_delta", delta))
        out.append(event("message_stop", {"type": "message_stop"}))
        return b"".join(out)

    @staticmethod
    def ping() -> bytes:
        return PING

    @staticmethod
    def fail(exc: GatewayError) -> bytes:
        error = {"type": error_type(exc.status_code), "message": exc.message}
        return event("error", {"type": "error", "error": error})

    # ----------------------------------------------------------- blocks

    def _open(self, kind: str, block: dict[str, Any], out: list[bytes]) -> int:
        self._close(out)
        index = self._blocks
        self._blocks += 1
        self._block = (kind, index)
        out.append(
            event(
                "content_block_start", {"type": "content_block_start", "index": index, "content_block": block}
            )
        )
        return index

    def _close(self, out: list[bytes]) -> None:
        if self._block is not None:
            out.append(event("content_block_stop", {"type": "content_block_stop", "index": self._block[1]}))
            self._block = None

    def _text(self, text: str, out: list[bytes]) -> None:
        if self._block is None or self._block[0] != "text":
            self._open("text", {"type": "text", "text": ""}, out)
        assert self._block is not None
        delta = {"type": "text_delta", "text": text}
        out.append(
            event(
                "content_block_delta",
                {"type": "content_block_delta", "index": self._block[1], "delta": delta},
            )
        )

    def _tool(self, call: dict[str, Any], out: list[bytes]) -> None:
        position = call.get("index", 0)
        function = call.get("function") or {}
        index = self._tools.get(position)
        if index is None:
            block: dict[str, Any] = {
                "type": "tool_use",
                "id": call.get("id"),
                "name": function.get("name"),
                "input": {},
            }
            index = self._tools[position] = self._open("tool", block, out)
        arguments = function.get("arguments")
        if arguments:
            delta = {"type": "input_json_delta", "partial_json": arguments}
            out.append(
                event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
            )
