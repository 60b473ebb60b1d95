"""A fake Gemini Developer API on ``{prefix}/{model}:<method>`` (``prefix`` ``/v1beta/models``):
``generateContent``, ``streamGenerateContent`` and ``batchEmbedContents``.

Answers are deterministic: the model echoes the text of the last ``user`` turn (or the ``output``
of a ``functionResponse``), ``candidateCount`` times. When the request declares functions, the
calling mode is not ``NONE`` and the last turn is a user's text, it calls the allowed (or first)
function with args ``{"text": <that text>}`` instead. ``stopSequences`` and ``maxOutputTokens``
truncate (a token is a whitespace-separated word); ``finishReason`` is ``STOP`` or ``MAX_TOKENS``.
``streamGenerateContent?alt=sse`` answers one ``GenerateContentResponse`` per word as ``data:``
events (``\\r\\n`` line ends, as Google sends them); the last one carries ``finishReason`` and the
full ``usageMetadata``. Without ``alt=sse`` the stream is one JSON array, as Gemini does.

Strict where Gemini is: unknown fields are a 400 ``Invalid JSON payload received. Unknown name``;
roles are ``user``/``model`` only; with ``api_key`` set, a missing key (``x-goog-api-key`` header or
``?key=``) is a 403 ``PERMISSION_DENIED`` and a wrong key a **400** ``INVALID_ARGUMENT`` with
``reason: API_KEY_INVALID`` in the details, exactly as the real API answers a bad key.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import orjson

from gateway_server.testing._fake_text import count_tokens, fake_embedding, truncate, words
from gateway_server.testing.fake_upstreams import FakeUpstream, RecordedRequest, Reply, Route, Stream

__all__ = ["FakeGemini"]

_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_REQUEST_FIELDS = frozenset(
    {
        "contents",
        "systemInstruction",
        "tools",
        "toolConfig",
        "generationConfig",
        "safetySettings",
        "cachedContent",
    }
)
_GENERATION_FIELDS = frozenset(
    {
        "stopSequences", "candidateCount", "maxOutputTokens", "temperature", "topP", "topK", "seed",
        "presencePenalty", "frequencyPenalty", "responseMimeType", "responseSchema", "responseJsonSchema",
        "responseLogprobs", "logprobs", "thinkingConfig", "responseModalities",
    }
)  # fmt: skip
_EMBED_FIELDS = frozenset({"model", "content", "taskType", "title", "outputDimensionality"})
_FINISH = {"end": "STOP", "stop": "STOP", "length": "MAX_TOKENS"}


class FakeGemini(FakeUpstream):
    """Gemini's generateContent, streamGenerateContent and batchEmbedContents. See the module docstring."""

    name = "gemini"

    def __init__(
        self,
        *,
        prefix: str = "/v1beta/models",
        api_key: str | None = None,
        embedding_dimensions: int = 8,
        chunk_delay: float = 0.0,
    ) -> None:
        self.api_key = api_key
        self.embedding_dimensions = embedding_dimensions
        self._ids = itertools.count(1)
        super().__init__(chunk_delay=chunk_delay, prefix=prefix)

    def routes(self) -> Iterator[Route]:
        yield Route("POST", f"{self.prefix}/{{model}}:generateContent", self.generate)
        yield Route("POST", f"{self.prefix}/{{model}}:streamGenerateContent", self.stream_generate)
        yield Route("POST", f"{self.prefix}/{{model}}:batchEmbedContents", self.batch_embed)

    def on_reset(self) -> None:
        self._ids = itertools.count(1)

    def error_body(self, status: int, message: str) -> Any:
        return {"error": {"code": status, "message": message, "status": _STATUS.get(status, "UNKNOWN")}}

    def authorize(self, request: RecordedRequest) -> Reply | None:
        if self.api_key is None:
            return None
        key = request.headers.get("x-goog-api-key") or request.query.get("key")
        if key == self.api_key:
            return None
        if not key:
            message = (
                "Method doesn't allow unregistered callers (callers without established identity). "
                "Please use API Key or other form of API consumer identity to call this API."
            )
            return Reply(403, self.error_body(403, message))
        body = self.error_body(400, "API key not valid. Please pass a valid API key.")
        body["error"]["details"] = [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"},
            }
        ]
        return Reply(400, body)

    # -- handlers ---------------------------------------------------------------------------------

    def generate(self, request: RecordedRequest) -> Reply:
        answer = self._compose(request)
        if isinstance(answer, Reply):
            return answer
        return Reply(200, answer)

    def stream_generate(self, request: RecordedRequest) -> Reply | Stream:
        answer = self._compose(request)
        if isinstance(answer, Reply):
            return answer
        events = _stream_events(answer)
        if request.query.get("alt") != "sse":
            return Reply(200, events)
        return Stream([b"data: " + orjson.dumps(event) + b"\r\n\r\n" for event in events])

    def batch_embed(self, request: RecordedRequest) -> Reply:
        body = request.json
        if not isinstance(body, dict) or not isinstance(body.get("requests"), list) or not body["requests"]:
            return self._bad("* BatchEmbedContentsRequest.requests: requests is not specified")
        unknown = [key for key in body if key != "requests"]
        if unknown:
            return self._unknown(unknown[0])
        resource = f"models/{request.path_params['model']}"
        embeddings = []
        for index, item in enumerate(body["requests"]):
            unknown = [key for key in item if key not in _EMBED_FIELDS]
            if unknown:
                return self._unknown(f"requests[{index}].{unknown[0]}")
            if item.get("model") != resource:
                return self._bad(
                    f"Model name in the request ({item.get('model')}) does not match the model in the URL ({resource})."
                )
            text = _text(item.get("content", {}).get("parts"))
            dimensions = int(item.get("outputDimensionality") or self.embedding_dimensions)
            embeddings.append({"values": fake_embedding(text, dimensions)})
        return Reply(200, {"embeddings": embeddings})

    # -- helpers ----------------------------------------------------------------------------------

    def _bad(self, message: str) -> Reply:
        return Reply(400, self.error_body(400, message))

    def _unknown(self, name: str) -> Reply:
        return self._bad(f'Invalid JSON payload received. Unknown name "{name}": Cannot find field.')

    def _compose(self, request: RecordedRequest) -> dict[str, Any] | Reply:
        body = request.json
        if not isinstance(body, dict):
            return self._bad("Invalid JSON payload received.")
        unknown = [key for key in body if key not in _REQUEST_FIELDS]
        unknown += [
            f"generationConfig.{k}" for k in body.get("generationConfig") or {} if k not in _GENERATION_FIELDS
        ]
        if unknown:
            return self._unknown(unknown[0])
        contents = body.get("contents")
        if not contents:
            return self._bad("* GenerateContentRequest.contents: contents is not specified")
        if any(content.get("role") not in ("user", "model") for content in contents):
            return self._bad("Please use a valid role: user, model.")
        config = body.get("generationConfig") or {}
        last = contents[-1]
        text = _text(last["parts"]) if last["role"] == "user" else ""
        declarations = [d for tool in body.get("tools") or () for d in tool.get("functionDeclarations") or ()]
        calling = (body.get("toolConfig") or {}).get("functionCallingConfig") or {}
        answered = any("functionResponse" in part for part in last["parts"])
        if declarations and calling.get("mode", "AUTO") != "NONE" and last["role"] == "user" and not answered:
            name = (calling.get("allowedFunctionNames") or [declarations[0]["name"]])[0]
            parts: list[dict[str, Any]] = [{"functionCall": {"name": name, "args": {"text": text}}}]
            finish, output = "STOP", 1
        else:
            ending = truncate(text, config.get("stopSequences"), config.get("maxOutputTokens"))
            parts, finish, output = [{"text": ending.text}], _FINISH[ending.reason], count_tokens(ending.text)
        count = int(config.get("candidateCount") or 1)
        prompt = sum(count_tokens(_text(content["parts"])) for content in contents)
        prompt += count_tokens(_text((body.get("systemInstruction") or {}).get("parts")))
        candidates = [
            {"content": {"parts": parts, "role": "model"}, "finishReason": finish, "index": index}
            for index in range(count)
        ]
        usage = {
            "promptTokenCount": prompt,
            "candidatesTokenCount": count * output,
            "totalTokenCount": prompt + count * output,
        }
        return {
            "candidates": candidates,
            "usageMetadata": usage,
            "modelVersion": request.path_params["model"],
            "responseId": f"fakeresp{next(self._ids):06d}",
        }


def _stream_events(answer: dict[str, Any]) -> list[dict[str, Any]]:
    """The answer cut into stream events: one per word (function calls whole), finish on the last."""
    head = {"modelVersion": answer["modelVersion"], "responseId": answer["responseId"]}
    usage = answer["usageMetadata"]
    partial_usage = {
        "promptTokenCount": usage["promptTokenCount"],
        "totalTokenCount": usage["promptTokenCount"],
    }
    events = []
    for candidate in answer["candidates"]:
        index = candidate["index"]
        part = candidate["content"]["parts"][0]
        pieces = [{"text": word} for word in words(part["text"])] if "text" in part else [part]
        pieces = pieces or [{"text": ""}]
        for position, piece in enumerate(pieces):
            streamed = {"content": {"parts": [piece], "role": "model"}, "index": index}
            final = position == len(pieces) - 1
            if final:
                streamed["finishReason"] = candidate["finishReason"]
            events.append(
                {"candidates": [streamed], "usageMetadata": usage if final else partial_usage, **head}
            )
    return events


def _text(parts: Any) -> str:
    texts = []
    for part in parts or ():
        if "text" in part:
            texts.append(part["text"])
        elif "functionResponse" in part:
            response = part["functionResponse"].get("response") or {}
            output = response.get("output", response)
            texts.append(output if isinstance(output, str) else orjson.dumps(output).decode())
    return " ".join(texts)
