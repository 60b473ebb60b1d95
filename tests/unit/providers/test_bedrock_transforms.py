"""Amazon Bedrock: Converse requests and answers, InvokeModel embeddings, SigV4, event streams (pure)."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Any
from unittest import mock

import orjson
import pytest
from pydantic import ValidationError

from gateway_server.errors import InvalidRequestError, UpstreamProtocolError, UpstreamStatusError
from gateway_server.providers import _aws, get_adapter_class
from gateway_server.providers.bedrock import BedrockAdapter, BedrockConfig
from gateway_server.providers.streaming import StreamEvent
from gateway_server.routes import RouteType
from gateway_server.testing.fake_bedrock import encode_event

MOMENT = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
KEYS = {"aws_access_key_id": "AKIDEXAMPLE", "aws_secret_access_key": "secret/EXAMPLE+key"}
MODEL = "anthropic.claude-3-haiku-20240307-v1:0"


@pytest.fixture(autouse=True)
def _no_aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)


def _adapter(model: str = MODEL, **aws: Any) -> BedrockAdapter:
    config = BedrockConfig.model_validate({"aws_config": {"aws_region": "us-east-1", **KEYS, **aws}})
    return BedrockAdapter(config, model, clock=lambda: MOMENT)


def _events(route_type: RouteType, events: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    adapter, state, chunks = _adapter(), {}, []
    for kind, data in events:
        chunks += adapter.parse_stream_event(
            route_type, StreamEvent(orjson.dumps(data).decode(), kind), state
        )
    return chunks


# ---------------------------------------------------------------- config and registry


def test_bedrock_is_registered_under_both_mlflow_names() -> None:
    assert get_adapter_class("bedrock") is BedrockAdapter
    assert get_adapter_class("Amazon-Bedrock") is BedrockAdapter


@pytest.mark.parametrize(
    "aws",
    [
        {"aws_region": "eu-west-1"},
        {"aws_region": "eu-west-1", **KEYS, "aws_session_token": "t"},
        {"aws_region": "eu-west-1", "aws_role_arn": "arn:aws:iam::1:role/r", "session_length_seconds": 3600},
        {"aws_region": "eu-west-1", "aws_bearer_token": "bedrock-key"},
    ],
)
def test_bedrock_config_accepts_mlflow_forms(aws: dict[str, Any]) -> None:
    config = BedrockConfig.model_validate({"aws_config": aws})
    assert config.aws_config.region == "eu-west-1"


@pytest.mark.parametrize(
    ("aws", "message"),
    [
        (
            {"aws_region": "r", **KEYS, "aws_role_arn": "arn"},
            "not aws_access_key_id/aws_secret_access_key and aws_role_arn",
        ),
        ({"aws_region": "r", "aws_access_key_id": "A"}, "go together"),
        (
            {"aws_region": "r", "aws_role_arn": "arn", "session_length_seconds": 60},
            "greater than or equal to 900",
        ),
        ({"aws_region": "r", "endpoint_url": "localhost:1"}, "http:// or https://"),
        ({}, "aws_region is required"),
        ({"aws_region": "r", "aws_secret": "typo"}, "Extra inputs are not permitted"),
    ],
)
def test_bedrock_config_refuses_bad_forms(aws: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        BedrockConfig.model_validate({"aws_config": aws})


def test_bedrock_region_falls_back_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-south-1")
    assert BedrockConfig.model_validate({"aws_config": {}}).aws_config.region == "ap-south-1"


def test_bedrock_secrets_are_masked_and_listed() -> None:
    config = BedrockConfig.model_validate({"aws_config": {"aws_region": "r", **KEYS}})
    assert "secret/EXAMPLE+key" not in repr(config)
    assert {secret.get() for secret in config.secrets()} == {"AKIDEXAMPLE", "secret/EXAMPLE+key"}


# ---------------------------------------------------------------- requests


def test_bedrock_build_chat_request_is_signed_converse() -> None:
    payload = {
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hi"},
            {"role": "user", "content": [{"type": "text", "text": "there"}]},
        ],
        "max_tokens": 10,
        "temperature": 0.3,
        "top_p": 0.9,
        "stop": "END",
    }
    request = _adapter().build_chat_request(payload)
    assert request.url == (
        "https://bedrock-runtime.us-east-1.amazonaws.com/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse"
    )
    assert request.body == {
        "messages": [{"role": "user", "content": [{"text": "hi"}, {"text": "there"}]}],
        "system": [{"text": "be brief"}],
        "inferenceConfig": {"maxTokens": 10, "temperature": 0.3, "topP": 0.9, "stopSequences": ["END"]},
    }
    assert request.raw_body == orjson.dumps(request.body)
    headers = dict(request.headers)
    authorization = headers.pop("Authorization")
    assert headers == {
        "Content-Type": "application/json",
        "Accept": "application/json",
        "X-Amz-Date": "20240102T030405Z",
    }
    assert authorization.startswith(
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240102/us-east-1/bedrock/aws4_request, "
        "SignedHeaders=accept;content-type;host;x-amz-date, Signature="
    )


def test_bedrock_signature_equals_botocores_own_add_auth() -> None:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = _adapter(aws_session_token="tok").build_chat_request(
        {"messages": [{"role": "user", "content": "x"}]}
    )
    reference = AWSRequest(
        method="POST",
        url=request.url,
        data=request.raw_body,
        headers={"Content-Type": "application/json", "Accept": "application/json"},
    )
    with mock.patch("botocore.auth.get_current_datetime", return_value=MOMENT.replace(tzinfo=None)):
        SigV4Auth(Credentials("AKIDEXAMPLE", "secret/EXAMPLE+key", "tok"), "bedrock", "us-east-1").add_auth(
            reference
        )
    assert request.headers["Authorization"] == reference.headers["Authorization"]
    assert request.headers["X-Amz-Security-Token"] == "tok"


def test_bedrock_bearer_token_is_not_signed() -> None:
    config = BedrockConfig.model_validate(
        {
            "aws_config": {
                "aws_region": "us-west-2",
                "aws_bearer_token": "k-1",
                "endpoint_url": "http://127.0.0.1:9/",
            }
        }
    )
    request = BedrockAdapter(config, "m").build_chat_request({"messages": [{"role": "user", "content": "x"}]})
    assert request.url == "http://127.0.0.1:9/model/m/converse"
    assert dict(request.headers) == {
        "Content-Type": "application/json",
        "Accept": "application/json",
        "Authorization": "Bearer k-1",
    }


def test_bedrock_tools_and_tool_history_become_converse_blocks() -> None:
    call = {"id": "t1", "type": "function", "function": {"name": "lookup", "arguments": '{"q": "x"}'}}
    payload = {
        "messages": [
            {"role": "user", "content": "find x"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "t1", "content": "x is 1"},
            {"role": "tool", "tool_call_id": "t2", "content": "y is 2"},
        ],
        "tools": [
            {
                "type": "function",
                "function": {"name": "lookup", "description": "Look up", "parameters": {"type": "object"}},
            },
            {"type": "function", "function": {"name": "noop"}},
        ],
        "tool_choice": {"type": "function", "function": {"name": "lookup"}},
    }
    body = _adapter().build_chat_request(payload).body
    assert body == {
        "messages": [
            {"role": "user", "content": [{"text": "find x"}]},
            {
                "role": "assistant",
                "content": [{"toolUse": {"toolUseId": "t1", "name": "lookup", "input": {"q": "x"}}}],
            },
            {
                "role": "user",
                "content": [
                    {"toolResult": {"toolUseId": "t1", "content": [{"text": "x is 1"}]}},
                    {"toolResult": {"toolUseId": "t2", "content": [{"text": "y is 2"}]}},
                ],
            },
        ],
        "toolConfig": {
            "tools": [
                {
                    "toolSpec": {
                        "name": "lookup",
                        "description": "Look up",
                        "inputSchema": {"json": {"type": "object"}},
                    }
                },
                {"toolSpec": {"name": "noop", "inputSchema": {"json": {"type": "object", "properties": {}}}}},
            ],
            "toolChoice": {"tool": {"name": "lookup"}},
        },
    }


def test_bedrock_tool_choice_none_offers_no_tools_and_auto_is_explicit() -> None:
    tools = [{"type": "function", "function": {"name": "f"}}]
    messages = [{"role": "user", "content": "x"}]
    adapter = _adapter()
    assert (
        "toolConfig"
        not in adapter.build_chat_request({"messages": messages, "tools": tools, "tool_choice": "none"}).body
    )
    auto = adapter.build_chat_request({"messages": messages, "tools": tools, "tool_choice": "auto"}).body
    assert auto["toolConfig"]["toolChoice"] == {"auto": {}}


def test_bedrock_images_go_inline_and_urls_are_refused() -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,aGVsbG8="}}
    body = _adapter().build_chat_request({"messages": [{"role": "user", "content": [image]}]}).body
    assert body["messages"][0]["content"] == [{"image": {"format": "png", "source": {"bytes": "aGVsbG8="}}}]
    remote = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    with pytest.raises(InvalidRequestError, match="inline"):
        _adapter().build_chat_request({"messages": [{"role": "user", "content": [remote]}]})


def test_bedrock_refuses_more_than_one_choice() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        _adapter().build_chat_request({"messages": [{"role": "user", "content": "x"}], "n": 2})
    assert caught.value.param == "n"


def test_bedrock_completions_are_one_user_message() -> None:
    request = _adapter().build_completions_request({"prompt": ["say hi"], "max_tokens": 5})
    assert request.url.endswith("/converse")
    assert request.body == {
        "messages": [{"role": "user", "content": [{"text": "say hi"}]}],
        "inferenceConfig": {"maxTokens": 5},
    }
    with pytest.raises(InvalidRequestError):
        _adapter().build_completions_request({"prompt": ["a", "b"]})


def test_bedrock_stream_request_uses_converse_stream() -> None:
    request = _adapter().build_stream_request(
        RouteType.CHAT, {"messages": [{"role": "user", "content": "x"}], "stream": True}
    )
    assert request.url.endswith("/converse-stream")
    assert request.headers["Accept"] == "application/vnd.amazon.eventstream"
    assert request.body == {"messages": [{"role": "user", "content": [{"text": "x"}]}]}
    with pytest.raises(InvalidRequestError):
        _adapter().build_stream_request(RouteType.EMBEDDINGS, {"input": "x"})


@pytest.mark.parametrize(
    ("model", "payload", "body"),
    [
        (
            "amazon.titan-embed-text-v2:0",
            {"input": "hello", "dimensions": 256},
            {"inputText": "hello", "dimensions": 256},
        ),
        ("amazon.titan-embed-text-v1", {"input": ["hello"]}, {"inputText": "hello"}),
        (
            "cohere.embed-english-v3",
            {"input": ["a", "b"]},
            {"texts": ["a", "b"], "input_type": "search_document"},
        ),
        (
            "us.cohere.embed-v4:0",
            {"input": "q", "input_type": "search_query"},
            {"texts": ["q"], "input_type": "search_query"},
        ),
    ],
)
def test_bedrock_embeddings_request_per_model_family(
    model: str, payload: dict[str, Any], body: dict[str, Any]
) -> None:
    request = _adapter(model).build_embeddings_request(payload)
    assert request.url.endswith("/invoke")
    assert request.body == body


def test_bedrock_embeddings_refusals() -> None:
    with pytest.raises(InvalidRequestError, match="one text per request"):
        _adapter("amazon.titan-embed-text-v2:0").build_embeddings_request({"input": ["a", "b"]})
    with pytest.raises(InvalidRequestError, match="not an embedding model"):
        _adapter().build_embeddings_request({"input": "a"})
    with pytest.raises(InvalidRequestError, match="not token ids"):
        _adapter("cohere.embed-english-v3").build_embeddings_request({"input": [1, 2]})


# ---------------------------------------------------------------- responses


def test_bedrock_parse_chat_joins_text_and_maps_tool_use() -> None:
    body = {
        "output": {
            "message": {
                "role": "assistant",
                "content": [
                    {"text": "Let me look. "},
                    {"toolUse": {"toolUseId": "tu_1", "name": "lookup", "input": {"q": "x"}}},
                ],
            }
        },
        "stopReason": "tool_use",
        "usage": {"inputTokens": 11, "outputTokens": 7, "totalTokens": 18},
        "metrics": {"latencyMs": 120},
    }
    assert _adapter().parse_response(RouteType.CHAT, body) == {
        "object": "chat.completion",
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Let me look. ",
                    "tool_calls": [
                        {
                            "id": "tu_1",
                            "type": "function",
                            "function": {"name": "lookup", "arguments": '{"q":"x"}'},
                        }
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
    }


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("guardrail_intervened", "content_filter"),
        ("content_filtered", "content_filter"),
        ("malformed_model_output", "stop"),
    ],
)
def test_bedrock_stop_reason_maps_to_finish_reason(stop_reason: str, finish: str) -> None:
    body = {
        "output": {"message": {"role": "assistant", "content": [{"text": "x"}]}},
        "stopReason": stop_reason,
    }
    assert _adapter().parse_response(RouteType.COMPLETIONS, body) == {
        "object": "text_completion",
        "model": MODEL,
        "choices": [{"index": 0, "text": "x", "finish_reason": finish}],
        "usage": {"prompt_tokens": None, "completion_tokens": None, "total_tokens": None},
    }


def test_bedrock_parse_embeddings_titan_and_cohere() -> None:
    titan = _adapter("amazon.titan-embed-text-v2:0").parse_response(
        RouteType.EMBEDDINGS,
        {"embedding": [0.1, 0.2], "inputTextTokenCount": 3, "embeddingsByType": {"float": [0.1, 0.2]}},
    )
    assert titan == {
        "object": "list",
        "model": "amazon.titan-embed-text-v2:0",
        "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}],
        "usage": {"prompt_tokens": 3, "total_tokens": 3},
    }
    cohere = _adapter("cohere.embed-english-v3")
    floats = {
        "embeddings": [[1.0], [2.0]],
        "id": "e",
        "response_type": "embeddings_floats",
        "texts": ["a", "b"],
    }
    by_type = {"embeddings": {"float": [[1.0], [2.0]]}, "id": "e", "response_type": "embeddings_by_type"}
    assert cohere.parse_response(RouteType.EMBEDDINGS, floats) == cohere.parse_response(
        RouteType.EMBEDDINGS, by_type
    )
    assert [item["embedding"] for item in cohere.parse_response(RouteType.EMBEDDINGS, floats)["data"]] == [
        [1.0],
        [2.0],
    ]


def test_bedrock_parse_refuses_undocumented_shapes() -> None:
    with pytest.raises(UpstreamProtocolError):
        _adapter().parse_response(RouteType.CHAT, {"completion": "old InvokeModel shape"})


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("header", "status", "expected"),
    [
        ("ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/", 400, 400),
        ("ThrottlingException", 429, 429),
        ("ModelNotReadyException", 429, 503),
        ("ServiceUnavailableException", 503, 503),
        ("AccessDeniedException", 403, 403),
        ("ModelTimeoutException", 408, 504),
        (None, 418, 418),
    ],
)
def test_bedrock_error_type_header_decides_the_status(header: str | None, status: int, expected: int) -> None:
    headers = {"x-amzn-ErrorType": header} if header else {}
    mapped, reason = _adapter().upstream_error(status, {"message": "words"}, headers)
    assert mapped == expected
    assert reason == (f"{header.split(':')[0]}: words" if header else "words")


# ---------------------------------------------------------------- streaming

TEXT_EVENTS = [
    ("messageStart", {"role": "assistant", "p": "ab"}),
    ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hel"}, "p": "abc"}),
    ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "lo"}}),
    ("contentBlockStop", {"contentBlockIndex": 0}),
    ("messageStop", {"stopReason": "max_tokens"}),
    (
        "metadata",
        {"usage": {"inputTokens": 3, "outputTokens": 2, "totalTokens": 5}, "metrics": {"latencyMs": 9}},
    ),
]


def test_bedrock_stream_chat_events_become_chunks() -> None:
    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
        return {
            "object": "chat.completion.chunk",
            "model": MODEL,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **extra,
        }

    assert _events(RouteType.CHAT, TEXT_EVENTS) == [
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Hel"}),
        chunk({"content": "lo"}),
        chunk({}, "length", usage={"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}),
    ]


def test_bedrock_stream_completions_events_become_chunks() -> None:
    chunks = _events(RouteType.COMPLETIONS, TEXT_EVENTS)
    assert [chunk["choices"][0]["text"] for chunk in chunks] == ["Hel", "lo", ""]
    assert chunks[-1]["choices"][0]["finish_reason"] == "length" and chunks[-1]["usage"]["total_tokens"] == 5
    assert {chunk["object"] for chunk in chunks} == {"text_completion"}


def test_bedrock_stream_tool_use_events_become_tool_call_deltas() -> None:
    events = [
        ("messageStart", {"role": "assistant"}),
        ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Checking."}}),
        ("contentBlockStop", {"contentBlockIndex": 0}),
        (
            "contentBlockStart",
            {"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "tu_9", "name": "lookup"}}},
        ),
        ("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": '{"q":'}}}),
        ("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": '"x"}'}}}),
        ("contentBlockStop", {"contentBlockIndex": 1}),
        ("messageStop", {"stopReason": "tool_use"}),
        (
            "metadata",
            {"usage": {"inputTokens": 1, "outputTokens": 1, "totalTokens": 2}, "metrics": {"latencyMs": 1}},
        ),
    ]
    deltas = [chunk["choices"][0]["delta"] for chunk in _events(RouteType.CHAT, events)]
    assert deltas[2:5] == [
        {
            "tool_calls": [
                {
                    "index": 0,
                    "id": "tu_9",
                    "type": "function",
                    "function": {"name": "lookup", "arguments": ""},
                }
            ]
        },
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"q":'}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '"x"}'}}]},
    ]


@pytest.mark.parametrize(
    ("kind", "status"),
    [
        ("throttlingException", 429),
        ("validationException", 400),
        ("modelStreamErrorException", 502),
        ("error", 502),
    ],
)
def test_bedrock_stream_exception_events_raise(kind: str, status: int) -> None:
    with pytest.raises(UpstreamStatusError) as caught:
        _events(RouteType.CHAT, [("messageStart", {"role": "assistant"}), (kind, {"message": "went wrong"})])
    assert caught.value.upstream_status == status
    assert caught.value.reason == f"{kind}: went wrong"


def test_bedrock_stream_event_without_documented_fields_is_protocol_error() -> None:
    with pytest.raises(UpstreamProtocolError):
        _events(RouteType.CHAT, [("contentBlockDelta", {"contentBlockIndex": 0})])


def test_event_stream_decoder_handles_any_split() -> None:
    def event(kind: str, payload: dict[str, Any]) -> bytes:
        return encode_event(
            {":event-type": kind, ":content-type": "application/json", ":message-type": "event"},
            orjson.dumps(payload),
        )

    raw = event("messageStart", {"role": "assistant"}) + event("messageStop", {"stopReason": "end_turn"})
    raw += encode_event(
        {":exception-type": "throttlingException", ":message-type": "exception"}, b'{"message":"slow"}'
    )
    raw += encode_event(
        {":error-code": "InternalFailure", ":error-message": "boom", ":message-type": "error"}, b""
    )
    expected = [
        StreamEvent('{"role":"assistant"}', "messageStart"),
        StreamEvent('{"stopReason":"end_turn"}', "messageStop"),
        StreamEvent('{"message":"slow"}', "throttlingException"),
        StreamEvent('{"code":"InternalFailure","message":"boom"}', "error"),
    ]
    for size in (1, 7, 64, len(raw)):
        decoder = _aws.EventStreamDecoder()
        events = [
            event for start in range(0, len(raw), size) for event in decoder.feed(raw[start : start + size])
        ]
        assert events + decoder.close() == expected
    decoder = _aws.EventStreamDecoder()
    decoder.feed(raw[:20])
    with pytest.raises(UpstreamProtocolError, match="ended its event stream inside a message"):
        decoder.close()
    corrupt = bytearray(raw)
    corrupt[-1] ^= 0xFF  # the last message's checksum
    with pytest.raises(UpstreamProtocolError, match="corrupt event stream"):
        _aws.EventStreamDecoder().feed(bytes(corrupt))


# ---------------------------------------------------------------- credentials


def test_assumed_role_credentials_refresh_before_expiry() -> None:
    now = [dt.datetime(2024, 1, 1, 0, 0, 0, tzinfo=dt.UTC)]
    calls: list[int] = []

    def assume_role() -> dict[str, Any]:
        calls.append(1)
        return {
            "AccessKeyId": f"ASIA{len(calls)}",
            "SecretAccessKey": "s",
            "SessionToken": f"token-{len(calls)}",
            "Expiration": now[0] + dt.timedelta(seconds=900),
        }

    source = _aws.assumed_role_credentials(
        "arn:aws:iam::1:role/r", "us-east-1", 900, assume_role=assume_role, time_fetcher=lambda: now[0]
    )
    assert calls == [] and source.due()  # nothing happens before the first load
    with pytest.raises(LookupError, match="not loaded yet"):
        source.frozen()  # signing never loads by itself
    source.load()
    assert source.frozen().token == "token-1" and not source.due()
    now[0] += dt.timedelta(seconds=500)  # 400 s left: more than a third of the session
    assert not source.due() and source.frozen().access_key == "ASIA1"
    now[0] += dt.timedelta(seconds=150)  # 250 s left: due, and the signer keeps the old keys till loaded
    assert source.due() and source.frozen().access_key == "ASIA1"
    asyncio.run(source.refresh())
    assert source.frozen().access_key == "ASIA2" and not source.due()
    assert len(calls) == 2


def test_credentials_are_resolved_and_refreshed_off_the_event_loop() -> None:
    """STS (here a call that blocks for 0.3 s) never stalls the loop: a ticker keeps its pace."""
    now = [dt.datetime(2024, 1, 1, 0, 0, 0, tzinfo=dt.UTC)]
    calls: list[float] = []

    def assume_role() -> dict[str, Any]:
        time.sleep(0.3)  # a blocking botocore call
        calls.append(1)
        return {
            "AccessKeyId": f"ASIA{len(calls)}",
            "SecretAccessKey": "s",
            "SessionToken": "t",
            "Expiration": now[0] + dt.timedelta(seconds=900),
        }

    config = BedrockConfig.model_validate(
        {"aws_config": {"aws_region": "us-east-1", "aws_role_arn": "arn:aws:iam::1:role/r"}}
    )
    adapter = BedrockAdapter(config, MODEL, clock=lambda: MOMENT)
    adapter.credentials = _aws.assumed_role_credentials(
        "arn:aws:iam::1:role/r", "us-east-1", 900, assume_role=assume_role, time_fetcher=lambda: now[0]
    )
    adapter.signer = _aws.SigV4Signer(adapter.credentials.frozen, "us-east-1", "bedrock", lambda: MOMENT)

    async def scenario() -> float:
        gaps: list[float] = []
        stop = asyncio.Event()

        async def ticker() -> None:
            last = time.monotonic()
            while not stop.is_set():
                await asyncio.sleep(0.01)
                gaps.append(time.monotonic() - last)
                last = time.monotonic()

        ticking = asyncio.ensure_future(ticker())
        assert adapter.refresh is not None
        await asyncio.gather(adapter.refresh(), adapter.refresh(), adapter.refresh())  # one load
        now[0] += dt.timedelta(seconds=700)  # inside the refresh window
        await adapter.refresh()
        stop.set()
        await ticking
        return max(gaps)

    assert asyncio.run(scenario()) < 0.2
    assert len(calls) == 2
    request = adapter.build_chat_request({"messages": [{"role": "user", "content": "x"}]})
    assert "Credential=ASIA2/" in request.headers["Authorization"]


def test_default_chain_reads_the_environment_on_first_use(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    adapter = _adapter_default_chain()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFROMENV")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "from-env")
    assert adapter.refresh is not None
    asyncio.run(adapter.refresh())  # what the upstream client does before building a request
    request = adapter.build_chat_request({"messages": [{"role": "user", "content": "x"}]})
    assert "Credential=AKIDFROMENV/" in request.headers["Authorization"]


def test_default_chain_without_credentials_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway_server.errors import UpstreamConnectionError

    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    for name in (
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_PROFILE",
    ):
        monkeypatch.delenv(name, raising=False)
    adapter = _adapter_default_chain()
    assert adapter.refresh is not None
    with pytest.raises(UpstreamConnectionError, match="no AWS credentials found"):
        asyncio.run(adapter.refresh())
    with pytest.raises(UpstreamConnectionError, match="not loaded yet"):
        adapter.build_chat_request({"messages": [{"role": "user", "content": "x"}]})


def _adapter_default_chain() -> BedrockAdapter:
    config = BedrockConfig.model_validate({"aws_config": {"aws_region": "us-east-1"}})
    return BedrockAdapter(config, MODEL, clock=lambda: MOMENT)
