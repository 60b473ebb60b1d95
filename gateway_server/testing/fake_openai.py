"""A fake OpenAI (and Azure OpenAI) upstream speaking the documented wire format.

Endpoints (``prefix`` defaults to ``/v1``, so ``openai_api_base = fake.api_base``)::

    POST {prefix}/chat/completions     POST /openai/deployments/{deployment}/chat/completions?api-version=…
    POST {prefix}/completions          POST /openai/deployments/{deployment}/completions?api-version=…
    POST {prefix}/embeddings           POST /openai/deployments/{deployment}/embeddings?api-version=…
    POST {prefix}/responses, GET and DELETE {prefix}/responses/{id}   (fake_openai_responses.py)

Answers are deterministic and derived from the request, so tests can assert them:

- chat: the assistant echoes the text of the last ``user`` (or ``tool``) message. When the request
  has ``tools`` and ``tool_choice`` is not ``"none"`` and the last message is the user's, it calls
  the chosen tool (or the first one) with arguments ``{"text": <that message>}`` instead.
- completions: each prompt is echoed back as its completion.
- embeddings: :func:`fake_embedding` of each input (``dimensions`` honoured, ``base64`` supported).
- a "token" is a whitespace-separated word (:func:`count_tokens`); ``max_tokens`` /
  ``max_completion_tokens`` truncate to that many words with ``finish_reason: "length"``; ``stop``
  cuts at the first stop string; ``n`` repeats the choice.
- ``"stream": true`` answers ``text/event-stream`` chunks (one per word, the first delta carrying
  the role), a final chunk with ``finish_reason``, a usage chunk when
  ``stream_options.include_usage`` is true, then ``data: [DONE]``.

Strict where OpenAI is: a body that is not a JSON object is a 400, a missing ``model`` (OpenAI
paths) or required field is a 400 in OpenAI's error envelope, an Azure path without ``api-version``
is a 404, and with ``api_key`` set the credentials are checked (``Authorization: Bearer`` for
OpenAI; ``api-key`` or ``Authorization: Bearer`` for Azure) and refused with a 401.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from gateway_server.testing.fake_openai_responses import ResponsesEndpoint
from gateway_server.testing.fake_upstreams import FakeUpstream, RecordedRequest, Reply, Route, Stream, sse

__all__ = ["CREATED", "SYSTEM_FINGERPRINT", "FakeOpenAI", "count_tokens", "fake_embedding"]

CREATED = 1_700_000_000  # the ``created`` of every answer, unless the fake is given another
SYSTEM_FINGERPRINT = "fp_fake"

_ERROR_KINDS = {  # status → (type, code) as OpenAI sends them
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", None),
    429: ("requests", "rate_limit_exceeded"),
}
_AZURE_NOT_FOUND = {"error": {"code": "404", "message": "Resource not found"}}
_AZURE_DENIED = {
    "error": {
        "code": "401",
        "message": "Access denied due to invalid subscription key or wrong API endpoint. Make sure to "
        "provide a valid key for an active subscription and use a correct regional API endpoint "
        "for your resource.",
    }
}
_WORD = re.compile(r"\s*\S+\s*")


def count_tokens(text: str) -> int:
    """The fake's token count: whitespace-separated words."""
    return len(_WORD.findall(text))


def fake_embedding(text: str, dimensions: int = 8) -> list[float]:
    """The deterministic vector the fake returns for ``text``: values in [-1, 1], 6 decimals."""
    digest = hashlib.shake_256(text.encode()).digest(dimensions)
    return [round(byte / 127.5 - 1, 6) for byte in digest]


@dataclass(frozen=True, slots=True)
class _Answer:
    content: str | None
    tool_calls: list[dict[str, Any]] | None
    finish_reason: str


class FakeOpenAI(FakeUpstream):
    """OpenAI / Azure OpenAI chat, completions and embeddings. See the module docstring."""

    name = "openai"

    def __init__(
        self,
        *,
        prefix: str = "/v1",
        api_key: str | None = None,
        created: int = CREATED,
        embedding_dimensions: int = 8,
        chunk_delay: float = 0.0,
    ) -> None:
        self._settings = {
            "api_key": api_key,
            "created": created,
            "embedding_dimensions": embedding_dimensions,
        }
        self.api_key = api_key
        self.created = created
        self.embedding_dimensions = embedding_dimensions
        self._ids = itertools.count(1)
        self.responses = ResponsesEndpoint(created, _WORD.findall)
        super().__init__(chunk_delay=chunk_delay, prefix=prefix)

    def routes(self) -> Iterator[Route]:
        for kind, handler in (
            ("chat/completions", self.chat),
            ("completions", self.completions),
            ("embeddings", self.embeddings),
        ):
            yield Route("POST", f"{self.prefix}/{kind}", handler)
            yield Route("POST", f"/openai/deployments/{{deployment}}/{kind}", handler)
        yield Route("POST", f"{self.prefix}/responses", self.responses.create)
        yield Route("GET", f"{self.prefix}/responses/{{id}}", self.responses.retrieve)
        yield Route("DELETE", f"{self.prefix}/responses/{{id}}", self.responses.retrieve)

    def on_reset(self) -> None:
        """Restart ids at 1 and undo changes to ``api_key``, ``created``, ``embedding_dimensions``."""
        self._ids = itertools.count(1)
        self.responses.reset()
        for name, value in self._settings.items():
            setattr(self, name, value)

    def error_body(self, status: int, message: str) -> Any:
        return _error(status, message)

    def authorize(self, request: RecordedRequest) -> Reply | None:
        if self.api_key is None:
            return None
        bearer = request.headers.get("authorization") == f"Bearer {self.api_key}"
        if _is_azure(request):
            ok = bearer or request.headers.get("api-key") == self.api_key
            return None if ok else Reply(401, _AZURE_DENIED)
        if bearer:
            return None
        message = "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys."
        return Reply(401, _error(401, message))

    # -- handlers ---------------------------------------------------------------------------------

    def chat(self, request: RecordedRequest) -> Reply | Stream:
        body = _validated(request, "messages")
        if isinstance(body, Reply):
            return body
        head = self._head("chatcmpl", request, body)
        answer = self._chat_answer(body)
        n = int(body.get("n") or 1)
        prompt_tokens = sum(
            count_tokens(_text(message.get("content")))
            for message in body["messages"]
            if isinstance(message, dict)
        )
        completion_tokens = n * count_tokens(answer.content or "")
        if body.get("stream"):
            usage = _usage(prompt_tokens, completion_tokens, details=True)
            return self._chat_stream(head, answer, n, body, usage)
        message: dict[str, Any] = {
            "role": "assistant",
            "content": answer.content,
            "refusal": None,
            "annotations": [],
        }
        if answer.tool_calls:
            message["tool_calls"] = answer.tool_calls
        choices = [
            {"index": index, "message": message, "logprobs": None, "finish_reason": answer.finish_reason}
            for index in range(n)
        ]
        usage = _usage(prompt_tokens, completion_tokens, details=True)
        return Reply(200, {**head, "choices": choices, "usage": usage})

    def completions(self, request: RecordedRequest) -> Reply | Stream:
        body = _validated(request, "prompt")
        if isinstance(body, Reply):
            return body
        prompt = body["prompt"]
        prompts = [prompt] if isinstance(prompt, str) else [_text(item) for item in prompt]
        n = int(body.get("n") or 1)
        answers = [_truncate(text, body) for text in prompts for _ in range(n)]
        usage = _usage(
            sum(count_tokens(text) for text in prompts), sum(count_tokens(text) for text, _ in answers)
        )
        head = self._head("cmpl", request, body)
        if body.get("stream"):
            return self._completions_stream(head, answers, body, usage)
        choices = [
            {"text": text, "index": index, "logprobs": None, "finish_reason": finish}
            for index, (text, finish) in enumerate(answers)
        ]
        return Reply(200, {**head, "choices": choices, "usage": usage})

    def embeddings(self, request: RecordedRequest) -> Reply:
        body = _validated(request, "input")
        if isinstance(body, Reply):
            return body
        inputs = _embedding_inputs(body["input"])
        if not inputs:
            message = "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference."
            return Reply(400, _error(400, message, param="input"))
        dimensions = int(body.get("dimensions") or self.embedding_dimensions)
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for index, text in enumerate(inputs):
            vector: Any = fake_embedding(text, dimensions)
            if as_base64:
                vector = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": vector})
        tokens = sum(count_tokens(text) for text in inputs)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        return Reply(200, {"object": "list", "data": data, "model": _model(request, body), "usage": usage})

    # -- helpers ----------------------------------------------------------------------------------

    def _head(self, kind: str, request: RecordedRequest, body: dict[str, Any]) -> dict[str, Any]:
        """The fields every answer of this kind starts with, in OpenAI's order."""
        head = {
            "id": f"{kind}-fake{next(self._ids):06d}",
            "object": "chat.completion" if kind == "chatcmpl" else "text_completion",
            "created": self.created,
            "model": _model(request, body),
            "system_fingerprint": SYSTEM_FINGERPRINT,
        }
        if kind == "chatcmpl":
            head["service_tier"] = "default"
        return head

    def _chat_answer(self, body: dict[str, Any]) -> _Answer:
        messages = body["messages"]
        last = messages[-1] if isinstance(messages[-1], dict) else {}
        tools = body.get("tools") or []
        tool_choice = body.get("tool_choice", "auto")
        if tools and tool_choice != "none" and last.get("role") == "user":
            if isinstance(tool_choice, dict):
                name = tool_choice["function"]["name"]
            else:
                name = tools[0]["function"]["name"]
            arguments = orjson.dumps({"text": _text(last.get("content"))}).decode()
            call = {
                "id": f"call_fake{next(self._ids):06d}",
                "type": "function",
                "function": {"name": name, "arguments": arguments},
            }
            return _Answer(None, [call], "tool_calls")
        said = [m for m in messages if isinstance(m, dict) and m.get("role") in ("user", "tool")]
        text, finish = _truncate(_text(said[-1].get("content")) if said else "", body)
        return _Answer(text, None, finish)

    def _chat_stream(
        self, head: dict[str, Any], answer: _Answer, n: int, body: dict[str, Any], usage: dict[str, Any]
    ) -> Stream:
        include_usage = _include_usage(body)
        base = {**head, "object": "chat.completion.chunk"}
        if include_usage:
            base["usage"] = None

        def chunk(index: int, delta: dict[str, Any], finish: str | None = None) -> bytes:
            choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
            return sse({**base, "choices": [choice]})

        chunks = []
        for index in range(n):
            chunks.append(chunk(index, {"role": "assistant", "content": "", "refusal": None}))
            for position, call in enumerate(answer.tool_calls or ()):
                function = call["function"]
                opening = {**call, "index": position, "function": {"name": function["name"], "arguments": ""}}
                chunks.append(chunk(index, {"tool_calls": [opening]}))
                arguments = {"index": position, "function": {"arguments": function["arguments"]}}
                chunks.append(chunk(index, {"tool_calls": [arguments]}))
            chunks.extend(chunk(index, {"content": word}) for word in _WORD.findall(answer.content or ""))
            chunks.append(chunk(index, {}, answer.finish_reason))
        if include_usage:
            chunks.append(sse({**base, "choices": [], "usage": usage}))
        chunks.append(sse("[DONE]"))
        return Stream(chunks)

    def _completions_stream(
        self,
        head: dict[str, Any],
        answers: list[tuple[str, str]],
        body: dict[str, Any],
        usage: dict[str, Any],
    ) -> Stream:
        include_usage = _include_usage(body)
        base = dict(head)
        if include_usage:
            base["usage"] = None

        def chunk(index: int, text: str, finish: str | None = None) -> bytes:
            choice = {"text": text, "index": index, "logprobs": None, "finish_reason": finish}
            return sse({**base, "choices": [choice]})

        chunks: list[bytes] = []
        for index, (text, finish) in enumerate(answers):
            chunks.extend(chunk(index, word) for word in _WORD.findall(text))
            chunks.append(chunk(index, "", finish))
        if include_usage:
            chunks.append(sse({**base, "choices": [], "usage": usage}))
        chunks.append(sse("[DONE]"))
        return Stream(chunks)


def _error(status: int, message: str, *, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    kind, default_code = _ERROR_KINDS.get(
        status, ("server_error" if status >= 500 else "invalid_request_error", None)
    )
    return {"error": {"message": message, "type": kind, "param": param, "code": code or default_code}}


def _is_azure(request: RecordedRequest) -> bool:
    return "deployment" in request.path_params


def _model(request: RecordedRequest, body: dict[str, Any]) -> str:
    return body.get("model") or request.path_params.get("deployment", "")


def _validated(request: RecordedRequest, required: str) -> dict[str, Any] | Reply:
    """The JSON body, or the error OpenAI (or Azure) would answer instead."""
    if _is_azure(request) and "api-version" not in request.query:
        return Reply(404, _AZURE_NOT_FOUND)
    body = request.json
    if not isinstance(body, dict):
        message = (
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using "
            "your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was "
            "not valid JSON.)"
        )
        return Reply(400, _error(400, message))
    if not _is_azure(request) and not body.get("model"):
        return Reply(400, _error(400, "you must provide a model parameter"))
    value = body.get(required)
    if value is None or value == []:
        message = f"Missing required parameter: '{required}'."
        return Reply(400, _error(400, message, param=required, code="missing_required_parameter"))
    if required == "messages" and not isinstance(value, list):
        message = (
            f"Invalid type for 'messages': expected an array of objects, but got {type(value).__name__}."
        )
        return Reply(400, _error(400, message, param="messages", code="invalid_type"))
    return body


def _text(content: Any) -> str:
    """The text of a message ``content`` (a string, or a list of parts), or of a token list."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        if all(isinstance(part, dict) for part in content):
            return "".join(str(part.get("text", "")) for part in content)
        return " ".join(str(part) for part in content)  # a token array
    return str(content)


def _truncate(text: str, body: dict[str, Any]) -> tuple[str, str]:
    """Apply ``stop`` then ``max_completion_tokens``/``max_tokens``; return (text, finish_reason)."""
    stops = body.get("stop") or []
    for stop in [stops] if isinstance(stops, str) else stops:
        if stop and stop in text:
            text = text[: text.index(stop)]
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    words = _WORD.findall(text)
    if limit is not None and len(words) > int(limit):
        return "".join(words[: int(limit)]).rstrip(), "length"
    return text, "stop"


def _embedding_inputs(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not value:
        return []
    if all(isinstance(item, int) for item in value):
        return [_text(value)]
    if all(isinstance(item, str | list) for item in value):
        return [_text(item) for item in value]
    return []


def _include_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and bool(options.get("include_usage"))


def _usage(prompt: int, completion: int, *, details: bool = False) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if details:
        usage["prompt_tokens_details"] = {"cached_tokens": 0, "audio_tokens": 0}
        usage["completion_tokens_details"] = {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        }
    return usage
