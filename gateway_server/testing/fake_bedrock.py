"""A fake Amazon Bedrock Runtime speaking the documented wire format (``bedrock-runtime`` 2023-09-30).

Endpoints (``aws_config.endpoint_url = fake.url``)::

    POST /model/{modelId}/converse          Converse: JSON in, JSON out
    POST /model/{modelId}/converse-stream   ConverseStream: JSON in, application/vnd.amazon.eventstream out
    POST /model/{modelId}/invoke            InvokeModel: Titan or Cohere embeddings, by model id

Answers are deterministic, as :class:`~gateway_server.testing.FakeOpenAI`'s: the assistant echoes
the text of the last user message (or tool result); with ``toolConfig`` and a last user message of
text it calls the chosen tool (or the first) with ``{"text": <that text>}``; ``maxTokens`` cuts to that
many words (``max_tokens``), ``stopSequences`` at the first match (``stop_sequence``). Streams send
``messageStart``, content block events (one delta per word), ``messageStop`` and ``metadata``, each
payload padded with ``"p"`` as Bedrock pads them.

**Credentials.** With ``access_key``/``secret_key`` set, every request's SigV4 ``Authorization``
is recomputed with botocore from the bytes received and refused like AWS refuses it (403 with
``x-amzn-ErrorType``); with ``bearer_token`` set, ``Authorization: Bearer`` is checked instead.
Errors are ``{"message": ...}`` with the type in ``x-amzn-ErrorType``: use :func:`bedrock_error`.
"""

from __future__ import annotations

import binascii
import itertools
import re
import struct
from collections.abc import Iterator, Mapping
from typing import Any

import orjson

from gateway_server.testing._fake_text import count_tokens, fake_embedding, truncate, words
from gateway_server.testing.fake_upstreams import FakeUpstream, Fault, RecordedRequest, Reply, Route, Stream

__all__ = ["EVENT_STREAM", "FakeBedrock", "bedrock_error", "encode_event", "expected_authorization"]

EVENT_STREAM = "application/vnd.amazon.eventstream"
_ERROR_URI = ":http://internal.amazon.com/coral/com.amazon.bedrock/"
_STATUS_OF = {
    "ValidationException": 400,
    "AccessDeniedException": 403,
    "ResourceNotFoundException": 404,
    "ThrottlingException": 429,
    "ModelNotReadyException": 429,
    "ModelTimeoutException": 408,
    "ModelErrorException": 424,
    "InternalServerException": 500,
    "ServiceUnavailableException": 503,
}
_STOP_REASON = {"end": "end_turn", "stop": "stop_sequence", "length": "max_tokens"}
_PAD = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ"


def bedrock_error(kind: str, message: str | None = None, *, status: int | None = None, **fault: Any) -> Fault:
    """A fault answering Bedrock's error for ``kind`` (e.g. ``"ThrottlingException"``)."""
    return Fault.error(
        status or _STATUS_OF.get(kind, 400),
        {"message": message or f"Injected {kind}"},
        headers={"x-amzn-ErrorType": kind + _ERROR_URI, **fault.pop("headers", {})},
        **fault,
    )


def encode_event(headers: Mapping[str, str], payload: bytes) -> bytes:
    """One AWS event-stream message (string headers only), CRCs included."""
    encoded = b"".join(
        bytes([len(name)]) + name + b"\x07" + struct.pack(">H", len(value)) + value
        for name, value in ((k.encode(), v.encode()) for k, v in headers.items())
    )
    prelude = struct.pack(">II", 12 + len(encoded) + len(payload) + 4, len(encoded))
    prelude += struct.pack(">I", binascii.crc32(prelude))
    message = prelude + encoded + payload
    return message + struct.pack(">I", binascii.crc32(message))


def _event(kind: str, payload: dict[str, Any]) -> bytes:
    headers = {":event-type": kind, ":content-type": "application/json", ":message-type": "event"}
    return encode_event(headers, orjson.dumps({**payload, "p": _PAD[: 4 + len(kind)]}))


def expected_authorization(
    request: RecordedRequest, host: str, access_key: str, secret_key: str, region: str
) -> str | None:
    """The Authorization header botocore computes for ``request`` as received (None: not SigV4)."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    given = request.headers.get("authorization", "")
    match = re.search(r"SignedHeaders=([^,]+)", given)
    timestamp = request.headers.get("x-amz-date")
    if not given.startswith("AWS4-HMAC-SHA256 ") or match is None or timestamp is None:
        return None
    names = match.group(1).split(";")
    headers = {name: request.headers[name] for name in names if name != "host" and name in request.headers}
    url = f"http://{host}{request.raw_path}"
    if request.query_string:
        url += f"?{request.query_string}"
    aws = AWSRequest(method=request.method, url=url, data=request.body, headers=headers)
    aws.context["timestamp"] = timestamp
    credentials = Credentials(access_key, secret_key, request.headers.get("x-amz-security-token"))
    signer = SigV4Auth(credentials, "bedrock", region)
    signature = signer.signature(signer.string_to_sign(aws, signer.canonical_request(aws)), aws)
    signed = signer.signed_headers(signer.headers_to_sign(aws))
    return f"AWS4-HMAC-SHA256 Credential={signer.scope(aws)}, SignedHeaders={signed}, Signature={signature}"


class FakeBedrock(FakeUpstream):
    """Bedrock Runtime's Converse, ConverseStream and InvokeModel. See the module docstring."""

    name = "bedrock"

    def __init__(
        self,
        *,
        region: str = "us-east-1",
        access_key: str | None = None,
        secret_key: str | None = None,
        bearer_token: str | None = None,
        embedding_dimensions: int = 8,
        chunk_delay: float = 0.0,
    ) -> None:
        self.region = region
        self.access_key = access_key
        self.secret_key = secret_key
        self.bearer_token = bearer_token
        self.embedding_dimensions = embedding_dimensions
        super().__init__(chunk_delay=chunk_delay)

    def routes(self) -> Iterator[Route]:
        yield Route("POST", "/model/{model}/converse", self.converse)
        yield Route("POST", "/model/{model}/converse-stream", self.converse_stream)
        yield Route("POST", "/model/{model}/invoke", self.invoke)

    def error_body(self, status: int, message: str) -> Any:
        return {"message": message}

    def authorize(self, request: RecordedRequest) -> Reply | None:
        given = request.headers.get("authorization")
        if self.bearer_token is not None and given == f"Bearer {self.bearer_token}":
            return None
        if self.access_key is None or self.secret_key is None:
            return (
                None
                if self.bearer_token is None
                else _refuse("UnrecognizedClientException", "Invalid API key")
            )
        if not given:
            return _refuse("MissingAuthenticationTokenException", "Missing Authentication Token")
        if f"Credential={self.access_key}/" not in given:
            return _refuse(
                "UnrecognizedClientException", "The security token included in the request is invalid."
            )
        host = request.headers.get("host", "")
        expected = expected_authorization(request, host, self.access_key, self.secret_key, self.region)
        if expected != given:
            return _refuse(
                "InvalidSignatureException",
                "The request signature we calculated does not match the signature you provided. "
                "Check your AWS Secret Access Key and signing method.",
            )
        return None

    # -- handlers ---------------------------------------------------------------------------------

    def converse(self, request: RecordedRequest) -> Reply:
        body = _validated(request)
        if isinstance(body, Reply):
            return body
        content, stop_reason = self._reply_to(body)
        usage = _usage(body, content)
        answer = {
            "output": {"message": {"role": "assistant", "content": content}},
            "stopReason": stop_reason,
            "usage": usage,
            "metrics": {"latencyMs": 7},
        }
        return Reply(200, answer)

    def converse_stream(self, request: RecordedRequest) -> Reply | Stream:
        body = _validated(request)
        if isinstance(body, Reply):
            return body
        content, stop_reason = self._reply_to(body)
        events = [_event("messageStart", {"role": "assistant"})]
        for index, block in enumerate(content):
            if "toolUse" in block:
                tool = block["toolUse"]
                start = {"toolUse": {"toolUseId": tool["toolUseId"], "name": tool["name"]}}
                events.append(_event("contentBlockStart", {"start": start, "contentBlockIndex": index}))
                delta = {"toolUse": {"input": orjson.dumps(tool["input"]).decode()}}
                events.append(_event("contentBlockDelta", {"delta": delta, "contentBlockIndex": index}))
            else:
                events.extend(
                    _event("contentBlockDelta", {"delta": {"text": word}, "contentBlockIndex": index})
                    for word in words(block["text"])
                )
            events.append(_event("contentBlockStop", {"contentBlockIndex": index}))
        events.append(_event("messageStop", {"stopReason": stop_reason}))
        events.append(_event("metadata", {"usage": _usage(body, content), "metrics": {"latencyMs": 7}}))
        return Stream(events, content_type=EVENT_STREAM)

    def invoke(self, request: RecordedRequest) -> Reply:
        model = request.path_params["model"]
        body = request.json
        if not isinstance(body, dict):
            return _refuse(
                "ValidationException",
                "Malformed input request, please reformat your input and try again.",
                400,
            )
        if "titan-embed" in model:
            text = body.get("inputText")
            if not isinstance(text, str):
                return _refuse(
                    "ValidationException", "Malformed input request: required key [inputText] not found", 400
                )
            vector = fake_embedding(text, int(body.get("dimensions") or self.embedding_dimensions))
            answer = {
                "embedding": vector,
                "inputTextTokenCount": count_tokens(text),
                "embeddingsByType": {"float": vector},
            }
            return Reply(200, answer)
        if "cohere.embed" in model:
            texts = body.get("texts")
            if not isinstance(texts, list) or "input_type" not in body:
                return _refuse(
                    "ValidationException",
                    "Malformed input request: #: required key [input_type] not found",
                    400,
                )
            vectors = [fake_embedding(text, self.embedding_dimensions) for text in texts]
            answer = {
                "embeddings": vectors,
                "id": "emb-fake-0001",
                "response_type": "embeddings_floats",
                "texts": texts,
            }
            return Reply(
                200, answer, headers={"X-Amzn-Bedrock-Input-Token-Count": str(sum(map(count_tokens, texts)))}
            )
        return _refuse("ValidationException", f"The provided model identifier is invalid: {model}", 400)

    # -- helpers ----------------------------------------------------------------------------------

    def _reply_to(self, body: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
        last = body["messages"][-1]
        tools = [
            tool["toolSpec"] for tool in (body.get("toolConfig") or {}).get("tools", []) if "toolSpec" in tool
        ]
        last_text = "".join(block.get("text", "") for block in last["content"])
        if tools and last["role"] == "user" and last_text:
            choice = body["toolConfig"].get("toolChoice") or {}
            name = choice["tool"]["name"] if "tool" in choice else tools[0]["name"]
            call = {
                "toolUseId": f"tooluse_fake{len(self.requests):04d}",
                "name": name,
                "input": {"text": last_text},
            }
            return [{"toolUse": call}], "tool_use"
        text = last_text
        for block in last["content"]:
            for part in (block.get("toolResult") or {}).get("content", []):
                text += part.get("text", "")
        config = body.get("inferenceConfig") or {}
        ending = truncate(text, config.get("stopSequences"), config.get("maxTokens"))
        return [{"text": ending.text}], _STOP_REASON[ending.reason]


def _refuse(kind: str, message: str, status: int = 403) -> Reply:
    return Reply(status, {"message": message}, headers={"x-amzn-ErrorType": kind + _ERROR_URI})


def _validated(request: RecordedRequest) -> dict[str, Any] | Reply:
    body = request.json
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list) or not body["messages"]:
        return _refuse(
            "ValidationException", "The model returned the following errors: messages: required", 400
        )
    roles = [message.get("role") for message in body["messages"]]
    if roles[0] != "user" or any(a == b for a, b in itertools.pairwise(roles)):
        return _refuse(
            "ValidationException",
            "A conversation must start with a user message and alternate between user and assistant roles.",
            400,
        )
    if any(not isinstance(message.get("content"), list) for message in body["messages"]):
        return _refuse("ValidationException", "messages.content: expected a list of content blocks", 400)
    return body


def _usage(body: dict[str, Any], content: list[dict[str, Any]]) -> dict[str, int]:
    said = [block.get("text", "") for block in body.get("system") or []]
    for message in body["messages"]:
        for block in message["content"]:
            said.append(block.get("text", ""))
            said.extend(part.get("text", "") for part in (block.get("toolResult") or {}).get("content", []))
    prompt = sum(count_tokens(text) for text in said)
    output = sum(count_tokens(block.get("text", "")) for block in content) or len(content)
    return {"inputTokens": prompt, "outputTokens": output, "totalTokens": prompt + output}
