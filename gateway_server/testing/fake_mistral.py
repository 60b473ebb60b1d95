"""A fake Mistral AI API (``POST {prefix}/chat/completions``, ``POST {prefix}/embeddings``, ``prefix`` ``/v1``).

Answers are deterministic: chat echoes the last ``user`` (or ``tool``) message, ``n`` times. When
the request has ``tools``, ``tool_choice`` is not ``none`` and the last message is the user's, it
calls the chosen tool (or the first) with arguments ``{"text": <that message>}`` and a 9-character
call id, as Mistral does. ``stop`` and ``max_tokens`` truncate (a token is a whitespace-separated
word) with ``finish_reason`` ``stop``/``length``. ``"stream": true`` answers OpenAI-style chunks
(first delta with the role, one per word, tool calls whole in one delta) whose last chunk carries the
finish reason and the usage, then ``data: [DONE]``. Embeddings are :func:`fake_embedding` vectors.

Strict where Mistral is: unknown fields (OpenAI's ``seed``, ``user``, ``max_completion_tokens``...)
are a 422 in Mistral's ``{"object": "error", "message": {"detail": [...]}}`` envelope, ``model`` and
``messages``/``input`` are required, a tool-call id in the conversation (an assistant's
``tool_calls[].id``, a tool message's ``tool_call_id``) that is not exactly 9 letters and digits is
Mistral's 400 ``invalid_function_call``, and with ``api_key`` set a wrong bearer token is a 401
``{"message": "Unauthorized"}``.
"""

from __future__ import annotations

import itertools
import re
import string
from collections.abc import Iterator
from typing import Any

import orjson

from gateway_server.testing._fake_text import count_tokens, fake_embedding, truncate, words
from gateway_server.testing.fake_upstreams import FakeUpstream, RecordedRequest, Reply, Route, Stream, sse

__all__ = ["CREATED", "FakeMistral"]

CREATED = 1_700_000_000
_CHAT_FIELDS = frozenset(
    {
        "model", "messages", "temperature", "top_p", "max_tokens", "stream", "stop", "random_seed",
        "metadata", "response_format", "tools", "tool_choice", "presence_penalty", "frequency_penalty",
        "n", "prediction", "parallel_tool_calls", "prompt_mode", "safe_prompt", "min_tokens", "top_k",
        "logprobs", "top_logprobs", "reasoning_effort", "repetition_penalty",
    }
)  # fmt: skip
_EMBED_FIELDS = frozenset(
    {"model", "input", "metadata", "output_dimension", "output_dtype", "encoding_format"}
)
_ERROR_TYPES = {400: "invalid_request_error", 404: "invalid_request_error", 429: "rate_limit_error"}
_FINISH = {"end": "stop", "stop": "stop", "length": "length"}


class FakeMistral(FakeUpstream):
    """Mistral's chat completions and embeddings. See the module docstring."""

    name = "mistral"

    def __init__(
        self,
        *,
        prefix: str = "/v1",
        api_key: str | None = None,
        embedding_dimensions: int = 8,
        chunk_delay: float = 0.0,
    ) -> None:
        self.api_key = api_key
        self.embedding_dimensions = embedding_dimensions
        self._ids = itertools.count(1)
        super().__init__(chunk_delay=chunk_delay, prefix=prefix)

    def routes(self) -> Iterator[Route]:
        yield Route("POST", f"{self.prefix}/chat/completions", self.chat)
        yield Route("POST", f"{self.prefix}/embeddings", self.embeddings)

    def on_reset(self) -> None:
        self._ids = itertools.count(1)

    def error_body(self, status: int, message: str) -> Any:
        kind = _ERROR_TYPES.get(status, "internal_server_error" if status >= 500 else "invalid_request_error")
        return {"object": "error", "message": message, "type": kind, "param": None, "code": None}

    def authorize(self, request: RecordedRequest) -> Reply | None:
        if self.api_key is None or request.headers.get("authorization") == f"Bearer {self.api_key}":
            return None
        return Reply(401, {"message": "Unauthorized", "request_id": "fake-request"})

    # -- handlers ---------------------------------------------------------------------------------

    def chat(self, request: RecordedRequest) -> Reply | Stream:
        body = _validated(request, _CHAT_FIELDS, "messages")
        if isinstance(body, Reply):
            return body
        bad_id = _bad_call_id(body["messages"])
        if bad_id is not None:
            problem = f"Tool call id was {bad_id} but must be a-z, A-Z, 0-9, with a length of 9."
            return Reply(
                400,
                {
                    "object": "error",
                    "message": problem,
                    "type": "invalid_function_call",
                    "param": None,
                    "code": "3280",
                },
            )
        n = int(body.get("n") or 1)
        messages = body["messages"]
        prompt = sum(count_tokens(_text(message.get("content"))) for message in messages)
        said = [m for m in messages if m.get("role") in ("user", "tool")]
        text = _text(said[-1].get("content")) if said else ""
        head = {
            "id": f"fake-cmpl-{next(self._ids):06d}",
            "object": "chat.completion",
            "created": CREATED,
            "model": body["model"],
        }
        choice = body.get("tool_choice") or "auto"
        if body.get("tools") and choice != "none" and messages[-1].get("role") == "user":
            name = (
                choice["function"]["name"]
                if isinstance(choice, dict)
                else body["tools"][0]["function"]["name"]
            )
            call = {
                "id": self._call_id(),
                "type": "function",
                "function": {"name": name, "arguments": orjson.dumps({"text": text}).decode()},
                "index": 0,
            }
            message: dict[str, Any] = {"role": "assistant", "content": "", "tool_calls": [call], "prefix": False}
            finish, output = "tool_calls", 1
        else:
            ending = truncate(text, _stops(body.get("stop")), body.get("max_tokens"))
            message = {"role": "assistant", "content": ending.text, "tool_calls": None, "prefix": False}
            finish, output = _FINISH[ending.reason], count_tokens(ending.text)
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": n * output,
            "total_tokens": prompt + n * output,
        }
        if body.get("stream"):
            return _stream(head, message, finish, n, usage)
        choices = [{"index": i, "message": message, "finish_reason": finish} for i in range(n)]
        return Reply(200, {**head, "choices": choices, "usage": usage})

    def embeddings(self, request: RecordedRequest) -> Reply:
        body = _validated(request, _EMBED_FIELDS, "input")
        if isinstance(body, Reply):
            return body
        inputs = [body["input"]] if isinstance(body["input"], str) else body["input"]
        dimensions = int(body.get("output_dimension") or self.embedding_dimensions)
        data = [
            {"object": "embedding", "embedding": fake_embedding(text, dimensions), "index": index}
            for index, text in enumerate(inputs)
        ]
        tokens = sum(count_tokens(text) for text in inputs)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens, "completion_tokens": 0}
        return Reply(
            200,
            {
                "id": f"fake-emb-{next(self._ids):06d}",
                "object": "list",
                "data": data,
                "model": body["model"],
                "usage": usage,
            },
        )

    def _call_id(self) -> str:
        number = next(self._ids)
        alphabet = string.ascii_letters + string.digits
        digits = []
        for _ in range(9):
            number, rest = divmod(number, len(alphabet))
            digits.append(alphabet[rest])
        return "".join(reversed(digits))


def _bad_call_id(messages: list[dict[str, Any]]) -> str | None:
    ids = [message["tool_call_id"] for message in messages if "tool_call_id" in message]
    ids += [call.get("id") for message in messages for call in message.get("tool_calls") or ()]
    return next((str(call_id) for call_id in ids if not re.fullmatch(r"[a-zA-Z0-9]{9}", str(call_id))), None)


def _validated(request: RecordedRequest, fields: frozenset[str], required: str) -> dict[str, Any] | Reply:
    body = request.json
    if not isinstance(body, dict):
        return _unprocessable([{"type": "json_invalid", "loc": ["body"], "msg": "JSON decode error"}])
    problems = [
        {
            "type": "extra_forbidden",
            "loc": ["body", key],
            "msg": "Extra inputs are not permitted",
            "input": value,
        }
        for key, value in body.items()
        if key not in fields
    ]
    problems += [
        {"type": "missing", "loc": ["body", key], "msg": "Field required", "input": None}
        for key in ("model", required)
        if key not in body
    ]
    return _unprocessable(problems) if problems else body


def _unprocessable(detail: list[dict[str, Any]]) -> Reply:
    message = {"detail": detail}
    body = {
        "object": "error",
        "message": message,
        "type": "invalid_request_message_error",
        "param": None,
        "code": None,
    }
    return Reply(422, body)


def _stream(
    head: dict[str, Any], message: dict[str, Any], finish: str, n: int, usage: dict[str, Any]
) -> Stream:
    base = {**head, "object": "chat.completion.chunk"}

    def chunk(index: int, delta: dict[str, Any], finish_reason: str | None = None, **extra: Any) -> bytes:
        return sse(
            {**base, "choices": [{"index": index, "delta": delta, "finish_reason": finish_reason}], **extra}
        )

    chunks = []
    for index in range(n):
        chunks.append(chunk(index, {"role": "assistant", "content": ""}))
        if message.get("tool_calls"):
            chunks.append(chunk(index, {"tool_calls": message["tool_calls"]}))
        else:
            chunks.extend(chunk(index, {"content": word}) for word in words(message["content"]))
        extra = {"usage": usage} if index == n - 1 else {}
        chunks.append(chunk(index, {"content": ""}, finish, **extra))
    chunks.append(sse("[DONE]"))
    return Stream(chunks)


def _stops(stop: Any) -> list[str] | None:
    return [stop] if isinstance(stop, str) else stop


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if isinstance(part, dict))
