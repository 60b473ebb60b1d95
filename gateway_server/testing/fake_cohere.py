"""A fake Cohere API v2 (``POST {prefix}/chat``, ``POST {prefix}/embed``, ``prefix`` ``/v2``).

Answers are deterministic: chat echoes the last ``user`` (or ``tool``) message. When the request
has ``tools``, ``tool_choice`` is not ``NONE`` and the last message is the user's, it calls the
first tool with arguments ``{"text": <that message>}`` (with a ``tool_plan``) instead.
``stop_sequences`` and ``max_tokens`` truncate (a token is a whitespace-separated word) with
``finish_reason`` ``STOP_SEQUENCE``/``MAX_TOKENS``. ``"stream": true`` answers Cohere's v2 event
sequence (``message-start``, ``content-start``, ``content-delta`` per word, ``content-end`` or the
``tool-plan-delta``/``tool-call-*`` events, ``message-end`` with finish reason and usage), each
as ``event: <type>`` plus ``data: <json>``. Embed answers :func:`fake_embedding` vectors in
``embeddings.float`` with ``meta.billed_units``.

Strict where Cohere is: ``model`` and ``messages`` (or ``texts``) are required, unknown fields are a
400, roles are system/user/assistant/tool, embed needs ``input_type``, and with ``api_key`` set a
wrong bearer token is a 401 ``{"id", "message": "invalid api token"}``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import orjson

from gateway_server.testing._fake_text import count_tokens, fake_embedding, truncate, words
from gateway_server.testing.fake_upstreams import FakeUpstream, RecordedRequest, Reply, Route, Stream, sse

__all__ = ["FakeCohere"]

_CHAT_FIELDS = frozenset(
    {
        "model", "messages", "tools", "strict_tools", "documents", "citation_options", "response_format",
        "safety_mode", "max_tokens", "stop_sequences", "temperature", "seed", "frequency_penalty",
        "presence_penalty", "k", "p", "logprobs", "tool_choice", "thinking", "priority", "stream",
    }
)  # fmt: skip
_EMBED_FIELDS = frozenset(
    {
        "model",
        "texts",
        "images",
        "inputs",
        "input_type",
        "embedding_types",
        "truncate",
        "output_dimension",
        "max_tokens",
    }
)
_FINISH = {"end": "COMPLETE", "stop": "STOP_SEQUENCE", "length": "MAX_TOKENS"}


class FakeCohere(FakeUpstream):
    """Cohere's v2 chat and embed. See the module docstring."""

    name = "cohere"

    def __init__(
        self,
        *,
        prefix: str = "/v2",
        api_key: str | None = None,
        embedding_dimensions: int = 8,
        chunk_delay: float = 0.0,
    ) -> None:
        self.api_key = api_key
        self.embedding_dimensions = embedding_dimensions
        self._ids = itertools.count(1)
        super().__init__(chunk_delay=chunk_delay, prefix=prefix)

    def routes(self) -> Iterator[Route]:
        yield Route("POST", f"{self.prefix}/chat", self.chat)
        yield Route("POST", f"{self.prefix}/embed", self.embed)

    def on_reset(self) -> None:
        self._ids = itertools.count(1)

    def error_body(self, status: int, message: str) -> Any:
        return {"id": "00000000-fake-error", "message": message}

    def authorize(self, request: RecordedRequest) -> Reply | None:
        if self.api_key is None or request.headers.get("authorization") == f"Bearer {self.api_key}":
            return None
        return Reply(401, self.error_body(401, "invalid api token"))

    # -- handlers ---------------------------------------------------------------------------------

    def chat(self, request: RecordedRequest) -> Reply | Stream:
        body = self._validated(request, _CHAT_FIELDS, "messages")
        if isinstance(body, Reply):
            return body
        for index, message in enumerate(body["messages"]):
            if message.get("role") not in ("system", "user", "assistant", "tool"):
                return self._bad(
                    f"invalid request: messages[{index}].role must be one of system, user, assistant, tool"
                )
        said = [m for m in body["messages"] if m["role"] in ("user", "tool")]
        last = body["messages"][-1]
        text = _text(said[-1].get("content")) if said else ""
        response_id = f"fake-chat-{next(self._ids):06d}"
        prompt = sum(count_tokens(_text(message.get("content"))) for message in body["messages"])
        if body.get("tools") and body.get("tool_choice") != "NONE" and last["role"] == "user":
            name = body["tools"][0]["function"]["name"]
            call = {
                "id": f"fake_call_{next(self._ids):06d}",
                "type": "function",
                "function": {"name": name, "arguments": orjson.dumps({"text": text}).decode()},
            }
            message = {"role": "assistant", "tool_plan": f"I will call {name}.", "tool_calls": [call]}
            finish, output = "TOOL_CALL", 1
        else:
            ending = truncate(text, body.get("stop_sequences"), body.get("max_tokens"))
            message = {"role": "assistant", "content": [{"type": "text", "text": ending.text}]}
            finish, output = _FINISH[ending.reason], count_tokens(ending.text)
        counts = {"input_tokens": prompt, "output_tokens": output}
        usage = {"billed_units": counts, "tokens": counts}
        if body.get("stream"):
            return _stream(response_id, message, finish, usage)
        return Reply(200, {"id": response_id, "finish_reason": finish, "message": message, "usage": usage})

    def embed(self, request: RecordedRequest) -> Reply:
        body = self._validated(request, _EMBED_FIELDS, "texts")
        if isinstance(body, Reply):
            return body
        if not body.get("input_type"):
            return self._bad("invalid request: valid input_type must be provided with the provided model")
        texts = body["texts"]
        dimensions = int(body.get("output_dimension") or self.embedding_dimensions)
        tokens = sum(count_tokens(text) for text in texts)
        return Reply(
            200,
            {
                "id": f"fake-embed-{next(self._ids):06d}",
                "embeddings": {"float": [fake_embedding(text, dimensions) for text in texts]},
                "texts": texts,
                "meta": {"api_version": {"version": "2"}, "billed_units": {"input_tokens": tokens}},
                "response_type": "embeddings_by_type",
            },
        )

    def _validated(
        self, request: RecordedRequest, fields: frozenset[str], required: str
    ) -> dict[str, Any] | Reply:
        body = request.json
        if not isinstance(body, dict):
            return self._bad("invalid request: the body is not valid JSON")
        for key in body:
            if key not in fields:
                return self._bad(f"invalid request: unknown field '{key}'")
        for key in ("model", required):
            if not body.get(key):
                return self._bad(f"invalid request: {key} must be provided")
        return body

    def _bad(self, message: str) -> Reply:
        return Reply(400, self.error_body(400, message))


def _stream(response_id: str, message: dict[str, Any], finish: str, usage: dict[str, Any]) -> Stream:
    def event(data: dict[str, Any]) -> bytes:
        return sse(data, data["type"])

    opening = {"role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}
    chunks = [event({"id": response_id, "type": "message-start", "delta": {"message": opening}})]
    if message.get("tool_calls"):
        chunks.append(
            event({"type": "tool-plan-delta", "delta": {"message": {"tool_plan": message["tool_plan"]}}})
        )
        for index, call in enumerate(message["tool_calls"]):
            arguments = call["function"]["arguments"]
            start = {**call, "function": {"name": call["function"]["name"], "arguments": ""}}
            chunks.append(
                event(
                    {"type": "tool-call-start", "index": index, "delta": {"message": {"tool_calls": start}}}
                )
            )
            half = len(arguments) // 2
            for part in (arguments[:half], arguments[half:]):
                delta = {"message": {"tool_calls": {"function": {"arguments": part}}}}
                chunks.append(event({"type": "tool-call-delta", "index": index, "delta": delta}))
            chunks.append(event({"type": "tool-call-end", "index": index}))
    else:
        text = message["content"][0]["text"]
        start = {"message": {"content": {"type": "text", "text": ""}}}
        chunks.append(event({"type": "content-start", "index": 0, "delta": start}))
        for word in words(text):
            chunks.append(
                event(
                    {"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": word}}}}
                )
            )
        chunks.append(event({"type": "content-end", "index": 0}))
    chunks.append(event({"type": "message-end", "delta": {"finish_reason": finish, "usage": usage}}))
    return Stream(chunks)


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if isinstance(part, dict))
