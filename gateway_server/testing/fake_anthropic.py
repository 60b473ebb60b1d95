"""A fake Anthropic Messages API (``POST {prefix}/messages``, ``prefix`` ``/v1``) on the documented wire format.

Answers are deterministic: the assistant echoes the text of the last user turn (its text blocks, or
the content of its ``tool_result`` blocks). When the request has ``tools``, ``tool_choice`` is not
``none`` and the last user turn holds no tool result, it calls the chosen tool (or the first) with
input ``{"text": <that text>}`` instead. ``stop_sequences`` and ``max_tokens`` truncate (a token is
a whitespace-separated word) with ``stop_reason`` ``stop_sequence``/``max_tokens``. ``"stream": true``
answers the documented event sequence (``message_start``, ``content_block_start``, ``ping``,
``content_block_delta``..., ``content_block_stop``, ``message_delta`` with the usage,
``message_stop``), one text delta per word.

``POST {prefix}/messages/count_tokens`` answers ``{"input_tokens"}`` counted the same way.

Strict where Anthropic is: the ``anthropic-version`` header is required; ``model``, ``max_tokens``
and ``messages`` are required; unknown top-level fields are refused ("Extra inputs are not
permitted"); only ``user``/``assistant`` roles (a ``system`` role gets Anthropic's hint to use the
top-level ``system``); ``temperature`` must be within 0-1; every tool needs a ``name`` and an
``input_schema`` whose ``type`` is ``object``; a ``tool_choice`` of type ``tool`` must name one of
the tools, and forced tool use (``any``/``tool``) is refused with ``thinking`` enabled; with ``api_key`` set, a request without
that key (in ``x-api-key``, or as ``Authorization: Bearer`` as Anthropic's newer SDKs send it) is a
401 ``authentication_error``. Errors use ``{"type": "error", "error": {"type",
"message"}, "request_id"}``; status 529 is ``overloaded_error``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import orjson

from gateway_server.testing._fake_text import count_tokens, truncate, words
from gateway_server.testing.fake_upstreams import FakeUpstream, RecordedRequest, Reply, Route, Stream, sse

__all__ = ["FakeAnthropic"]

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_FIELDS = frozenset(
    {
        "model", "messages", "max_tokens", "system", "stop_sequences", "temperature", "top_p", "top_k",
        "tools", "tool_choice", "metadata", "stream", "thinking", "service_tier", "container",
        "output_config", "inference_geo", "cache_control",
    }
)  # fmt: skip
_STOP_REASONS = {"end": "end_turn", "stop": "stop_sequence", "length": "max_tokens"}


class FakeAnthropic(FakeUpstream):
    """Anthropic's Messages API. See the module docstring."""

    name = "anthropic"

    def __init__(self, *, prefix: str = "/v1", api_key: str | None = None, chunk_delay: float = 0.0) -> None:
        self.api_key = api_key
        self._ids = itertools.count(1)
        super().__init__(chunk_delay=chunk_delay, prefix=prefix)

    def routes(self) -> Iterator[Route]:
        yield Route("POST", f"{self.prefix}/messages", self.messages)
        yield Route("POST", f"{self.prefix}/messages/count_tokens", self.count_tokens)

    def on_reset(self) -> None:
        self._ids = itertools.count(1)

    def error_body(self, status: int, message: str) -> Any:
        kind = _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
        return {"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_fake"}

    def authorize(self, request: RecordedRequest) -> Reply | None:
        if self.api_key is None or request.headers.get("x-api-key") == self.api_key:
            return None
        # Anthropic's newer SDKs send the API key as a bearer token; the API takes both forms.
        if request.headers.get("authorization") == f"Bearer {self.api_key}":
            return None
        return Reply(401, self.error_body(401, "invalid x-api-key"))

    # -- handler ----------------------------------------------------------------------------------

    def messages(self, request: RecordedRequest) -> Reply | Stream:
        body = self._validated(request)
        if isinstance(body, Reply):
            return body
        message_id = f"msg_fake{next(self._ids):06d}"
        content, stop_reason, stop_sequence = self._compose(body)
        prompt_tokens = count_tokens(_system_text(body.get("system"))) + sum(
            count_tokens(_text(message["content"])) for message in body["messages"]
        )
        output_tokens = sum(
            count_tokens(block["text"]) if block["type"] == "text" else 1 + len(block["input"])
            for block in content
        )
        usage = {
            "input_tokens": prompt_tokens,
            "output_tokens": output_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        }
        head = {"id": message_id, "type": "message", "role": "assistant", "model": body["model"]}
        if body.get("stream"):
            return _stream(head, content, stop_reason, stop_sequence, usage)
        tail = {"stop_reason": stop_reason, "stop_sequence": stop_sequence, "usage": usage}
        return Reply(200, {**head, "content": content, **tail})

    def count_tokens(self, request: RecordedRequest) -> Reply:
        """``{"input_tokens": N}``, counted as the messages call counts its input (no max_tokens)."""
        body = request.json
        if not isinstance(body, dict) or "model" not in body or not body.get("messages"):
            return self._bad("model and messages are required")
        if "max_tokens" in body or "stream" in body:
            return self._bad(
                f"{'max_tokens' if 'max_tokens' in body else 'stream'}: Extra inputs are not permitted"
            )
        tokens = count_tokens(_system_text(body.get("system"))) + sum(
            count_tokens(_text(message["content"])) for message in body["messages"]
        )
        return Reply(200, {"input_tokens": tokens})

    def _validated(self, request: RecordedRequest) -> dict[str, Any] | Reply:
        if not request.headers.get("anthropic-version"):
            return self._bad("anthropic-version: header is required")
        body = request.json
        if not isinstance(body, dict):
            return self._bad("Could not parse the request body as JSON")
        for key in body:
            if key not in _FIELDS:
                return self._bad(f"{key}: Extra inputs are not permitted")
        for key in ("model", "max_tokens", "messages"):
            if key not in body:
                return self._bad(f"{key}: Field required")
        temperature = body.get("temperature")
        if temperature is not None and not 0 <= temperature <= 1:
            return self._bad("temperature: Input should be less than or equal to 1")
        if not body["messages"]:
            return self._bad("messages: at least one message is required")
        for index, message in enumerate(body["messages"]):
            role = message.get("role")
            if role == "system":
                return self._bad(
                    'messages: Unexpected role "system". The Messages API accepts a top-level `system` '
                    'parameter, not "system" as an input message role.'
                )
            if role not in ("user", "assistant"):
                return self._bad(f"messages.{index}.role: Input should be 'user' or 'assistant'")
        problem = _tools_problem(body)
        return self._bad(problem) if problem else body

    def _bad(self, message: str) -> Reply:
        return Reply(400, self.error_body(400, message))

    def _compose(self, body: dict[str, Any]) -> tuple[list[dict[str, Any]], str, str | None]:
        last = body["messages"][-1]
        blocks = last["content"] if isinstance(last["content"], list) else []
        answered_tool = any(block.get("type") == "tool_result" for block in blocks)
        tools = body.get("tools") or []
        choice = body.get("tool_choice") or {"type": "auto"}
        text = _text(last["content"]) if last["role"] == "user" else ""
        if tools and choice.get("type") != "none" and last["role"] == "user" and not answered_tool:
            name = choice["name"] if choice.get("type") == "tool" else tools[0]["name"]
            call_id = f"toolu_fake{next(self._ids):06d}"
            return (
                [{"type": "tool_use", "id": call_id, "name": name, "input": {"text": text}}],
                "tool_use",
                None,
            )
        ending = truncate(text, body.get("stop_sequences"), body["max_tokens"])
        return [{"type": "text", "text": ending.text}], _STOP_REASONS[ending.reason], ending.stop_sequence


def _tools_problem(body: dict[str, Any]) -> str | None:
    tools = body.get("tools") or []
    for index, tool in enumerate(tools):
        if not tool.get("name"):
            return f"tools.{index}.custom.name: Field required"
        if not isinstance(tool.get("input_schema"), dict) or tool["input_schema"].get("type") != "object":
            return f"tools.{index}.custom.input_schema.type: Input should be 'object'"
    choice = body.get("tool_choice") or {"type": "auto"}
    if choice.get("type") == "tool" and choice.get("name") not in {tool.get("name") for tool in tools}:
        return f"tool_choice.name: Tool '{choice.get('name')}' not found in provided tools"
    thinking = body.get("thinking") or {"type": "disabled"}
    if choice.get("type") in ("any", "tool") and thinking.get("type") != "disabled":
        return "Thinking may not be enabled when tool_choice forces tool use."
    return None


def _stream(
    head: dict[str, Any],
    content: list[dict[str, Any]],
    stop_reason: str,
    stop_sequence: str | None,
    usage: dict[str, Any],
) -> Stream:
    start_usage = {**usage, "output_tokens": 1}
    message = {**head, "content": [], "stop_reason": None, "stop_sequence": None, "usage": start_usage}
    chunks = [sse({"type": "message_start", "message": message}, "message_start")]
    for index, block in enumerate(content):
        if block["type"] == "text":
            opening: dict[str, Any] = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": word} for word in words(block["text"])]
        else:
            opening = {**block, "input": {}}
            arguments = orjson.dumps(block["input"]).decode()
            half = len(arguments) // 2
            deltas = [
                {"type": "input_json_delta", "partial_json": part}
                for part in (arguments[:half], arguments[half:])
            ]
        start = {"type": "content_block_start", "index": index, "content_block": opening}
        chunks.append(sse(start, "content_block_start"))
        if index == 0:
            chunks.append(sse({"type": "ping"}, "ping"))
        for delta in deltas:
            chunks.append(
                sse({"type": "content_block_delta", "index": index, "delta": delta}, "content_block_delta")
            )
        chunks.append(sse({"type": "content_block_stop", "index": index}, "content_block_stop"))
    ending = {
        "type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
        "usage": {"output_tokens": usage["output_tokens"]},
    }
    chunks.append(sse(ending, "message_delta"))
    chunks.append(sse({"type": "message_stop"}, "message_stop"))
    return Stream(chunks)


def _text(content: Any) -> str:
    """The text of a turn: a string, or its text blocks and the content of its tool results."""
    if isinstance(content, str):
        return content
    texts = []
    for block in content or ():
        if block.get("type") == "text":
            texts.append(block["text"])
        elif block.get("type") == "tool_result":
            texts.append(_text(block.get("content") or ""))
    return " ".join(texts)


def _system_text(system: Any) -> str:
    if isinstance(system, list):
        return " ".join(block.get("text", "") for block in system)
    return system or ""
