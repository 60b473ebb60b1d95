"""The bedrock adapter + the network module against the fake Bedrock Runtime on 127.0.0.1.

The fake recomputes every SigV4 signature with botocore from the bytes it received, so a request
that reaches a handler was signed correctly; the answers are also read back with botocore's own
rest-json parser and the bedrock-runtime service model, as boto3 would read them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from upstream_calls import call, stream

from gateway_server.errors import (
    UpstreamConnectionError,
    UpstreamProtocolError,
    UpstreamStatusError,
    UpstreamTimeoutError,
)
from gateway_server.providers.bedrock import BedrockAdapter, BedrockConfig
from gateway_server.routes import RouteType
from gateway_server.testing import Fault
from gateway_server.testing.fake_bedrock import (
    EVENT_STREAM,
    FakeBedrock,
    bedrock_error,
    expected_authorization,
)

pytestmark = pytest.mark.contract

ACCESS_KEY = "AKIDCONTRACTTEST"
SECRET_KEY = "contract/secret/key+value"
MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
CHAT = {"messages": [{"role": "user", "content": "hello bedrock"}], "temperature": 0.5}
TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]


@pytest.fixture(scope="module")
def fake_bedrock_server() -> Iterator[FakeBedrock]:
    with FakeBedrock(access_key=ACCESS_KEY, secret_key=SECRET_KEY).serve() as fake:
        yield fake


@pytest.fixture
def fake_bedrock(fake_bedrock_server: FakeBedrock) -> Iterator[FakeBedrock]:
    fake_bedrock_server.reset()
    yield fake_bedrock_server
    fake_bedrock_server.reset()


def _adapter(fake: FakeBedrock, model: str = MODEL, **aws: Any) -> BedrockAdapter:
    settings = {
        "aws_region": "us-east-1",
        "aws_access_key_id": ACCESS_KEY,
        "aws_secret_access_key": SECRET_KEY,
        "endpoint_url": fake.url,
        **aws,
    }
    return BedrockAdapter(BedrockConfig.model_validate({"aws_config": settings}), model)


def test_bedrock_chat_is_signed_over_the_exact_bytes(fake_bedrock: FakeBedrock) -> None:
    result = call(_adapter(fake_bedrock), RouteType.CHAT, dict(CHAT))
    request = fake_bedrock.last_request
    assert request.raw_path == "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse"
    assert request.json == {
        "messages": [{"role": "user", "content": [{"text": "hello bedrock"}]}],
        "inferenceConfig": {"temperature": 0.5},
    }
    authorization = request.headers["authorization"]
    assert authorization.startswith(f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/")
    assert "/us-east-1/bedrock/aws4_request" in authorization
    assert authorization == expected_authorization(
        request, request.headers["host"], ACCESS_KEY, SECRET_KEY, "us-east-1"
    )
    assert result["choices"] == [
        {"index": 0, "message": {"role": "assistant", "content": "hello bedrock"}, "finish_reason": "stop"}
    ]
    assert result["usage"] == {"prompt_tokens": 2, "completion_tokens": 2, "total_tokens": 4}


def test_bedrock_session_token_is_sent_and_signed(fake_bedrock: FakeBedrock) -> None:
    call(_adapter(fake_bedrock, aws_session_token="session-token-1"), RouteType.CHAT, dict(CHAT))
    request = fake_bedrock.last_request
    assert request.headers["x-amz-security-token"] == "session-token-1"
    assert "x-amz-security-token" in request.headers["authorization"]


def test_bedrock_wrong_secret_is_refused_as_502_without_the_secret(fake_bedrock: FakeBedrock) -> None:
    with pytest.raises(UpstreamStatusError) as caught:
        call(_adapter(fake_bedrock, aws_secret_access_key="not-the-secret"), RouteType.CHAT, dict(CHAT))
    assert (caught.value.status_code, caught.value.upstream_status) == (502, 403)
    assert "InvalidSignatureException: The request signature we calculated" in caught.value.message
    assert "not-the-secret" not in caught.value.message


def test_bedrock_bearer_token_form(fake_bedrock: FakeBedrock) -> None:
    fake_bedrock.bearer_token = "bedrock-api-key-1"
    try:
        adapter = BedrockAdapter(
            BedrockConfig.model_validate(
                {
                    "aws_config": {
                        "aws_region": "us-east-1",
                        "aws_bearer_token": "bedrock-api-key-1",
                        "endpoint_url": fake_bedrock.url,
                    }
                }
            ),
            MODEL,
        )
        call(adapter, RouteType.CHAT, dict(CHAT))
    finally:
        fake_bedrock.bearer_token = None
    assert fake_bedrock.last_request.headers["authorization"] == "Bearer bedrock-api-key-1"


def test_bedrock_tools_round_trip(fake_bedrock: FakeBedrock) -> None:
    result = call(_adapter(fake_bedrock), RouteType.CHAT, {**CHAT, "tools": TOOLS, "tool_choice": "required"})
    sent = fake_bedrock.last_request.json["toolConfig"]
    assert sent == {
        "tools": [{"toolSpec": {"name": "lookup", "inputSchema": {"json": {"type": "object"}}}}],
        "toolChoice": {"any": {}},
    }
    choice = result["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    call_id = choice["message"]["tool_calls"][0]["id"]
    assert choice["message"]["tool_calls"] == [
        {
            "id": call_id,
            "type": "function",
            "function": {"name": "lookup", "arguments": '{"text":"hello bedrock"}'},
        }
    ]
    follow_up = {
        "messages": [
            *CHAT["messages"],
            {"role": "assistant", "content": None, "tool_calls": choice["message"]["tool_calls"]},
            {"role": "tool", "tool_call_id": call_id, "content": "found it"},
        ],
        "tools": TOOLS,
    }
    answer = call(_adapter(fake_bedrock), RouteType.CHAT, follow_up)
    assert fake_bedrock.last_request.json["messages"][-1] == {
        "role": "user",
        "content": [{"toolResult": {"toolUseId": call_id, "content": [{"text": "found it"}]}}],
    }
    assert answer["choices"][0]["message"]["content"] == "found it"


def test_bedrock_completions_use_converse(fake_bedrock: FakeBedrock) -> None:
    result = call(_adapter(fake_bedrock), RouteType.COMPLETIONS, {"prompt": "one two three", "max_tokens": 2})
    assert fake_bedrock.last_request.path.endswith("/converse")
    assert result["choices"] == [{"index": 0, "text": "one two", "finish_reason": "length"}]


def test_bedrock_embeddings_titan_and_cohere(fake_bedrock: FakeBedrock) -> None:
    titan = call(
        _adapter(fake_bedrock, model="amazon.titan-embed-text-v2:0"), RouteType.EMBEDDINGS, {"input": "a b"}
    )
    assert fake_bedrock.last_request.raw_path == "/model/amazon.titan-embed-text-v2%3A0/invoke"
    assert fake_bedrock.last_request.json == {"inputText": "a b"}
    assert titan["usage"] == {"prompt_tokens": 2, "total_tokens": 2}
    assert len(titan["data"][0]["embedding"]) == fake_bedrock.embedding_dimensions
    cohere = call(
        _adapter(fake_bedrock, model="cohere.embed-english-v3"), RouteType.EMBEDDINGS, {"input": ["x", "y"]}
    )
    assert fake_bedrock.last_request.json == {"texts": ["x", "y"], "input_type": "search_document"}
    assert [item["index"] for item in cohere["data"]] == [0, 1]


@pytest.mark.parametrize(
    ("kind", "status", "upstream_status", "gateway_status"),
    [
        ("ValidationException", 400, 400, 400),
        ("UnrecognizedClientException", 401, 403, 502),
        ("AccessDeniedException", 403, 403, 502),
        ("ResourceNotFoundException", 404, 404, 404),
        ("ModelNotReadyException", 429, 503, 502),
        ("InternalServerException", 500, 500, 502),
        ("ServiceUnavailableException", 503, 503, 502),
    ],
)
def test_bedrock_error_types_map(
    fake_bedrock: FakeBedrock, kind: str, status: int, upstream_status: int, gateway_status: int
) -> None:
    fake_bedrock.inject(bedrock_error(kind, f"upstream says {kind}", status=status))
    with pytest.raises(UpstreamStatusError) as caught:
        call(_adapter(fake_bedrock), RouteType.CHAT, dict(CHAT))
    assert (caught.value.upstream_status, caught.value.status_code) == (upstream_status, gateway_status)
    assert f"{kind}: upstream says {kind}" in caught.value.message


def test_bedrock_throttling_keeps_retry_after(fake_bedrock: FakeBedrock) -> None:
    fake_bedrock.inject(
        bedrock_error("ThrottlingException", "Too many requests", headers={"Retry-After": "3"})
    )
    with pytest.raises(UpstreamStatusError) as caught:
        call(_adapter(fake_bedrock), RouteType.CHAT, dict(CHAT))
    assert (caught.value.status_code, caught.value.retry_after) == (429, 3)


def test_bedrock_error_without_type_header_uses_the_status(fake_bedrock: FakeBedrock) -> None:
    fake_bedrock.inject(Fault.error(500))
    with pytest.raises(UpstreamStatusError) as caught:
        call(_adapter(fake_bedrock), RouteType.CHAT, dict(CHAT))
    assert caught.value.upstream_status == 500 and "Injected fault" in caught.value.message


def test_bedrock_timeout_is_504(fake_bedrock: FakeBedrock) -> None:
    fake_bedrock.inject(Fault.slow(2))
    with pytest.raises(UpstreamTimeoutError):
        call(_adapter(fake_bedrock), RouteType.CHAT, dict(CHAT), timeout=0.3)


def test_bedrock_stream_chat_and_tools(fake_bedrock: FakeBedrock) -> None:
    chunks = stream(_adapter(fake_bedrock), RouteType.CHAT, {**CHAT, "stream": True})
    request = fake_bedrock.last_request
    assert request.path.endswith("/converse-stream")
    assert request.headers["accept"] == EVENT_STREAM
    assert "stream" not in request.json
    deltas = [chunk["choices"][0]["delta"] for chunk in chunks]
    assert deltas[0] == {"role": "assistant", "content": ""}
    assert "".join(delta.get("content", "") for delta in deltas) == "hello bedrock"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["usage"] == {"prompt_tokens": 2, "completion_tokens": 2, "total_tokens": 4}

    tool_chunks = stream(_adapter(fake_bedrock), RouteType.CHAT, {**CHAT, "tools": TOOLS, "stream": True})
    calls = [
        c["choices"][0]["delta"]["tool_calls"][0]
        for c in tool_chunks
        if "tool_calls" in c["choices"][0]["delta"]
    ]
    assert calls[0]["function"] == {"name": "lookup", "arguments": ""}
    assert calls[1] == {"index": 0, "function": {"arguments": '{"text":"hello bedrock"}'}}
    assert tool_chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_bedrock_stream_completions(fake_bedrock: FakeBedrock) -> None:
    chunks = stream(_adapter(fake_bedrock), RouteType.COMPLETIONS, {"prompt": "a b c", "stream": True})
    assert "".join(chunk["choices"][0]["text"] for chunk in chunks) == "a b c"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop" and chunks[-1]["usage"]["total_tokens"] == 6


def test_bedrock_stream_error_before_first_event(fake_bedrock: FakeBedrock) -> None:
    fake_bedrock.inject(bedrock_error("ThrottlingException", "slow down"))
    with pytest.raises(UpstreamStatusError) as caught:
        stream(_adapter(fake_bedrock), RouteType.CHAT, {**CHAT, "stream": True})
    assert caught.value.status_code == 429


def test_bedrock_stream_cut_mid_message_is_an_error(fake_bedrock: FakeBedrock) -> None:
    fake_bedrock.inject(Fault.cut_stream(after=2))
    with pytest.raises((UpstreamConnectionError, UpstreamProtocolError)):
        stream(_adapter(fake_bedrock), RouteType.CHAT, {**CHAT, "stream": True})


# ---------------------------------------------------------------- the fake, read by botocore


def _botocore_parse(operation: str, status: int, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    import botocore.session
    from botocore.parsers import create_parser

    model = botocore.session.get_session().get_service_model("bedrock-runtime")
    return create_parser("rest-json").parse(
        {"status_code": status, "headers": headers, "body": body},
        model.operation_model(operation).output_shape,
    )


def _answer(fake: FakeBedrock, path: str, body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    import httpx

    adapter = _adapter(fake)
    raw = __import__("orjson").dumps(body)
    url = f"{fake.url}{path}"
    headers = adapter.signer.sign("POST", url, {"Content-Type": "application/json"}, raw)  # type: ignore[union-attr]
    answer = httpx.post(url, content=raw, headers=headers)
    return answer.status_code, dict(answer.headers), answer.content


def test_fake_converse_answer_parses_with_botocore(fake_bedrock: FakeBedrock) -> None:
    body = {"messages": [{"role": "user", "content": [{"text": "hi there"}]}]}
    status, headers, raw = _answer(fake_bedrock, "/model/m/converse", body)
    parsed = _botocore_parse("Converse", status, headers, raw)
    assert parsed["output"]["message"] == {"role": "assistant", "content": [{"text": "hi there"}]}
    assert parsed["stopReason"] == "end_turn" and parsed["usage"]["totalTokens"] == 4


def test_fake_errors_parse_with_botocore(fake_bedrock: FakeBedrock) -> None:
    fake_bedrock.inject(bedrock_error("ThrottlingException", "Too many requests"))
    status, headers, raw = _answer(fake_bedrock, "/model/m/converse", {"messages": []})
    parsed = _botocore_parse("Converse", status, headers, raw)
    assert parsed["Error"] == {"Code": "ThrottlingException", "Message": "Too many requests"}


def test_fake_converse_stream_parses_with_botocore(fake_bedrock: FakeBedrock) -> None:
    import botocore.session
    from botocore.eventstream import EventStream
    from botocore.parsers import EventStreamJSONParser

    body = {"messages": [{"role": "user", "content": [{"text": "one two"}]}]}
    status, _, raw = _answer(fake_bedrock, "/model/m/converse-stream", body)
    assert status == 200
    model = botocore.session.get_session().get_service_model("bedrock-runtime")
    shape = model.operation_model("ConverseStream").output_shape.members["stream"]

    class Raw:
        def stream(self) -> Iterator[bytes]:
            yield raw[:7]
            yield raw[7:]

    events = list(EventStream(Raw(), shape, EventStreamJSONParser(), "ConverseStream"))
    kinds = [next(iter(event)) for event in events]
    assert kinds == [
        "messageStart",
        "contentBlockDelta",
        "contentBlockDelta",
        "contentBlockStop",
        "messageStop",
        "metadata",
    ]
    assert events[1]["contentBlockDelta"]["delta"] == {"text": "one "}
    assert events[-1]["metadata"]["usage"]["outputTokens"] == 2


def test_bedrock_signer_clock_is_injectable(fake_bedrock: FakeBedrock) -> None:
    moment = dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.UTC)
    adapter = BedrockAdapter(
        BedrockConfig.model_validate(
            {
                "aws_config": {
                    "aws_region": "us-east-1",
                    "aws_access_key_id": ACCESS_KEY,
                    "aws_secret_access_key": SECRET_KEY,
                    "endpoint_url": fake_bedrock.url,
                }
            }
        ),
        MODEL,
        clock=lambda: moment,
    )
    call(adapter, RouteType.CHAT, dict(CHAT))  # the fake accepts an old signature: no skew check
    assert fake_bedrock.last_request.headers["x-amz-date"] == "20240506T070809Z"
