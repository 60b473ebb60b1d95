"""Internal chat stream chunks → the Responses API's stream events (a pure state machine).

Feed the standard chunks of one stream in order (:meth:`ResponsesStream.feed`), then
:meth:`ResponsesStream.finish` when the upstream stream ends or :meth:`ResponsesStream.fail` when it
breaks. The events, each ``event: <type>`` + ``data: <json>`` with a ``sequence_number``:

``response.created``, ``response.in_progress``; per output item ``response.output_item.added``,
then for a message ``response.content_part.added``, ``response.output_text.delta``...,
``response.output_text.done``, ``response.content_part.done``, for a function call
``response.function_call_arguments.delta``..., ``response.function_call_arguments.done``; then
``response.output_item.done``; and ``response.completed`` (or ``response.incomplete`` when the
output hit ``max_output_tokens``) carrying the whole response, or ``response.failed`` with the error.

Items follow each other: an item is done when the next one starts. A late argument delta of an
earlier function call is added to that call's item (the SDKs accumulate by ``output_index``).
The final response object is kept in :attr:`ResponsesStream.response` for the response store.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway_server.errors import GatewayError
from gateway_server.protocols.responses import envelope, error_payload, response_usage

__all__ = ["ResponsesStream"]


class ResponsesStream:
    """One stream's translation state. See the module docstring."""

    __slots__ = (
        "_calls",
        "_current",
        "_finish",
        "_items",
        "_sequence",
        "_started",
        "_usage",
        "base",
        "response",
    )

    def __init__(self, payload: dict[str, Any], response_id: str, model: str, created_at: int) -> None:
        self.base = envelope(payload, response_id, model, created_at, "in_progress")
        self.response: dict[str, Any] | None = None  # the final object, once finished
        self._sequence = 0
        self._started = False
        self._items: list[dict[str, Any]] = []  # output items so far
        self._current: int | None = None  # output_index of the open item
        self._calls: dict[int, int] = {}  # chunk tool_calls[].index → output_index
        self._finish: str | None = None
        self._usage: dict[str, Any] | None = None

    def _event(self, kind: str, data: dict[str, Any]) -> bytes:
        data = {"type": kind, "sequence_number": self._sequence, **data}
        self._sequence += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"

    def _start(self, out: list[bytes]) -> None:
        self._started = True
        out.append(self._event("response.created", {"response": self.base}))
        out.append(self._event("response.in_progress", {"response": self.base}))

    def feed(self, chunks: list[dict[str, Any]]) -> bytes:
        out: list[bytes] = []
        if not self._started:
            self._start(out)
        for chunk in chunks:
            if chunk.get("usage"):
                self._usage = chunk["usage"]
            for choice in chunk.get("choices") or ():
                if choice.get("index", 0) != 0:
                    continue
                delta = choice.get("delta") or {}
                if delta.get("content"):
                    self._text(delta["content"], out)
                for call in delta.get("tool_calls") or ():
                    self._call(call, out)
                if choice.get("finish_reason"):
                    self._finish = choice["finish_reason"]
        return b"".join(out)

    def finish(self) -> bytes:
        out: list[bytes] = []
        if not self._started:
            self._start(out)
        self._close(out)
        incomplete = self._finish == "length"
        response = {**self.base, "status": "incomplete" if incomplete else "completed", "output": self._items}
        if incomplete:
            response["incomplete_details"] = {"reason": "max_output_tokens"}
        response["usage"] = response_usage(self._usage)
        response["output_text"] = "".join(
            part["text"] for item in self._items if item["type"] == "message" for part in item["content"]
        )
        self.response = response
        out.append(
            self._event("response.incomplete" if incomplete else "response.completed", {"response": response})
        )
        return b"".join(out)

    def fail(self, exc: GatewayError) -> bytes:
        out: list[bytes] = []
        if not self._started:
            self._start(out)
        error = error_payload(exc)
        response = {
            **self.base,
            "status": "failed",
            "output": self._items,
            "error": {"code": error["code"] or error["type"], "message": error["message"]},
        }
        out.append(self._event("response.failed", {"response": response}))
        return b"".join(out)

    @staticmethod
    def ping() -> None:
        return None  # the Responses API has no keep-alive event

    # ----------------------------------------------------------- items

    def _open(self, item: dict[str, Any], out: list[bytes]) -> int:
        self._close(out)
        index = len(self._items)
        self._items.append(item)
        self._current = index
        out.append(self._event("response.output_item.added", {"output_index": index, "item": {**item}}))
        return index

    def _close(self, out: list[bytes]) -> None:
        if self._current is None:
            return
        index, item = self._current, self._items[self._current]
        self._current = None
        item["status"] = "completed"
        if item["type"] == "message":
            part = item["content"][0]
            where = {"item_id": item["id"], "output_index": index, "content_index": 0}
            out.append(self._event("response.output_text.done", {**where, "text": part["text"]}))
            out.append(self._event("response.content_part.done", {**where, "part": part}))
        else:
            where = {"item_id": item["id"], "output_index": index}
            out.append(
                self._event(
                    "response.function_call_arguments.done", {**where, "arguments": item["arguments"]}
                )
            )
        out.append(self._event("response.output_item.done", {"output_index": index, "item": item}))

    def _text(self, text: str, out: list[bytes]) -> None:
        current = self._items[self._current] if self._current is not None else None
        if current is None or current["type"] != "message":
            item_id = f"msg_{self.base['id'][5:]}_{len(self._items)}"
            item: dict[str, Any] = {
                "type": "message",
                "id": item_id,
                "status": "in_progress",
                "role": "assistant",
                "content": [],
            }
            index = self._open(item, out)
            part = {"type": "output_text", "text": "", "annotations": []}
            where = {"item_id": item_id, "output_index": index, "content_index": 0}
            out.append(self._event("response.content_part.added", {**where, "part": dict(part)}))
            item["content"].append(part)
            current = item
        assert self._current is not None
        current["content"][0]["text"] += text
        where = {"item_id": current["id"], "output_index": self._current, "content_index": 0}
        out.append(self._event("response.output_text.delta", {**where, "delta": text}))

    def _call(self, call: dict[str, Any], out: list[bytes]) -> None:
        position = call.get("index", 0)
        function = call.get("function") or {}
        index = self._calls.get(position)
        if index is None:
            item = {
                "type": "function_call",
                "id": f"fc_{self.base['id'][5:]}_{len(self._items)}",
                "call_id": call.get("id"),
                "name": function.get("name"),
                "arguments": "",
                "status": "in_progress",
            }
            index = self._calls[position] = self._open(item, out)
        arguments = function.get("arguments")
        if arguments:
            item = self._items[index]
            item["arguments"] += arguments
            out.append(
                self._event(
                    "response.function_call_arguments.delta",
                    {"item_id": item["id"], "output_index": index, "delta": arguments},
                )
            )
