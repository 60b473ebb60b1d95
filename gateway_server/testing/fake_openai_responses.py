"""The Responses API of :class:`~gateway_server.testing.FakeOpenAI` (``POST {prefix}/responses``,
``GET``/``DELETE {prefix}/responses/{id}``), on the documented wire format.

Deterministic, like the chat endpoint: the answer echoes the text of the last input item (a user
message's text, or a ``function_call_output``'s output). When the request has function ``tools``,
``tool_choice`` is not ``"none"`` and the last item is a user message, it calls the chosen tool (or
the first) with arguments ``{"text": <that text>}`` instead. ``max_output_tokens`` truncates (a
token is a word) with status ``incomplete``. ``previous_response_id`` must name a response this fake
stored (``store`` defaults to true), whose input and output are put before the new input.
``"stream": true`` answers the documented events, one text delta per word and the arguments in two
halves. Strict where OpenAI is: ``model`` and ``input`` are required, built-in tools are accepted
only as OpenAI names them, unknown ids are a 404.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import orjson

from gateway_server.testing.fake_upstreams import RecordedRequest, Reply, Stream, sse

__all__ = ["ResponsesEndpoint"]


def _error(status: int, message: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return " ".join(part.get("text", "") for part in content or () if isinstance(part, dict))


class ResponsesEndpoint:
    """State and handlers of the fake's Responses API (held by FakeOpenAI)."""

    def __init__(self, created: int, words: Callable[[str], list[str]]) -> None:
        # ``words`` is FakeOpenAI's tokenizer (a token is a word), handed over to keep imports one-way.
        self.words = words
        self.created = created
        self.stored: dict[str, dict[str, Any]] = {}
        self._ids = itertools.count(1)

    def reset(self) -> None:
        self.stored.clear()
        self._ids = itertools.count(1)

    def create(self, request: RecordedRequest) -> Reply | Stream:
        body = request.json
        if not isinstance(body, dict) or "model" not in body:
            return Reply(400, _error(400, "Missing required parameter: 'model'.", "model"))
        if "input" not in body:
            return Reply(400, _error(400, "Missing required parameter: 'input'.", "input"))
        items = (
            [{"type": "message", "role": "user", "content": body["input"]}]
            if isinstance(body["input"], str)
            else list(body["input"])
        )
        previous = body.get("previous_response_id")
        if previous:
            earlier = self.stored.get(previous)
            if earlier is None:
                return Reply(
                    404,
                    _error(404, f"Previous response with id '{previous}' not found.", "previous_response_id"),
                )
            items = [*earlier["input"], *earlier["response"]["output"], *items]
        number = next(self._ids)
        response_id = f"resp_fake{number:06d}"
        output, status = self._answer(body, items, number)
        text = "".join(
            part["text"] for item in output if item["type"] == "message" for part in item["content"]
        )
        prompt = sum(self._count(_text(item.get("content") or item.get("output") or "")) for item in items)
        usage: dict[str, Any] = {
            "input_tokens": prompt,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": self._count(text) + sum(1 for item in output if item["type"] == "function_call"),
            "output_tokens_details": {"reasoning_tokens": 0},
        }
        usage["total_tokens"] = usage["input_tokens"] + usage["output_tokens"]
        response = {
            "id": response_id, "object": "response", "created_at": self.created, "status": status,
            "error": None, "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
            "instructions": body.get("instructions"), "max_output_tokens": body.get("max_output_tokens"),
            "model": body["model"], "output": output, "parallel_tool_calls": True,
            "previous_response_id": previous, "store": body.get("store", True), "temperature": body.get("temperature", 1.0),
            "text": body.get("text") or {"format": {"type": "text"}}, "tool_choice": body.get("tool_choice", "auto"),
            "tools": body.get("tools") or [], "top_p": body.get("top_p", 1.0), "usage": usage,
            "metadata": body.get("metadata") or {},
        }  # fmt: skip
        if body.get("store", True):
            self.stored[response_id] = {"input": items, "response": response}
        if body.get("stream"):
            return Stream(_events(response, self.words))
        return Reply(200, response)

    def retrieve(self, request: RecordedRequest) -> Reply:
        response_id = request.path.rsplit("/", 1)[-1]
        entry = self.stored.get(response_id)
        if entry is None:
            return Reply(404, _error(404, f"Response with id '{response_id}' not found."))
        if request.method == "DELETE":
            del self.stored[response_id]
            return Reply(200, {"id": response_id, "object": "response", "deleted": True})
        return Reply(200, entry["response"])

    def _answer(
        self, body: dict[str, Any], items: list[dict[str, Any]], number: int
    ) -> tuple[list[dict[str, Any]], str]:
        last = items[-1] if items else {}
        tools = [tool for tool in body.get("tools") or () if tool.get("type") == "function"]
        choice = body.get("tool_choice", "auto")
        is_user = last.get("type", "message") == "message" and last.get("role") == "user"
        if tools and choice != "none" and is_user:
            name = choice["name"] if isinstance(choice, dict) else tools[0]["name"]
            arguments = orjson.dumps({"text": _text(last.get("content"))}).decode()
            call = {"type": "function_call", "id": f"fc_fake{number:06d}", "call_id": f"call_fake{number:06d}",
                    "name": name, "arguments": arguments, "status": "completed"}  # fmt: skip
            return [call], "completed"
        said = (
            last.get("output") if last.get("type") == "function_call_output" else _text(last.get("content"))
        )
        pieces = self.words(said if isinstance(said, str) else orjson.dumps(said).decode())
        limit = body.get("max_output_tokens")
        cut = limit is not None and len(pieces) > limit
        text = "".join(pieces[:limit]).rstrip() if cut else "".join(pieces)
        part = {"type": "output_text", "text": text, "annotations": []}
        message = {
            "type": "message",
            "id": f"msg_fake{number:06d}",
            "status": "completed",
            "role": "assistant",
            "content": [part],
        }
        return [message], "incomplete" if cut else "completed"

    def _count(self, text: str) -> int:
        return len(self.words(text))


def _events(response: dict[str, Any], words: Callable[[str], list[str]]) -> list[bytes]:
    sequence = itertools.count()
    out: list[bytes] = []

    def emit(kind: str, **data: Any) -> None:
        out.append(sse({"type": kind, "sequence_number": next(sequence), **data}, kind))

    opening = {**response, "status": "in_progress", "output": [], "usage": None}
    emit("response.created", response=opening)
    emit("response.in_progress", response=opening)
    for index, item in enumerate(response["output"]):
        if item["type"] == "message":
            emit(
                "response.output_item.added",
                output_index=index,
                item={**item, "status": "in_progress", "content": []},
            )
            where = {"item_id": item["id"], "output_index": index, "content_index": 0}
            emit(
                "response.content_part.added",
                **where,
                part={"type": "output_text", "text": "", "annotations": []},
            )
            for word in words(item["content"][0]["text"]):
                emit("response.output_text.delta", **where, delta=word)
            emit("response.output_text.done", **where, text=item["content"][0]["text"])
            emit("response.content_part.done", **where, part=item["content"][0])
        else:
            emit(
                "response.output_item.added",
                output_index=index,
                item={**item, "status": "in_progress", "arguments": ""},
            )
            half = len(item["arguments"]) // 2
            for piece in (item["arguments"][:half], item["arguments"][half:]):
                emit(
                    "response.function_call_arguments.delta",
                    item_id=item["id"],
                    output_index=index,
                    delta=piece,
                )
            emit(
                "response.function_call_arguments.done",
                item_id=item["id"],
                output_index=index,
                arguments=item["arguments"],
            )
        emit("response.output_item.done", output_index=index, item=item)
    emit(
        "response.incomplete" if response["status"] == "incomplete" else "response.completed",
        response=response,
    )
    return out
