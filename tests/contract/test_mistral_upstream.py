"""The mistral adapter + the network module against FakeMistral on 127.0.0.1; the fake checked against
Mistral's own SDK models (and client) so it cannot drift from the real wire format."""

from __future__ import annotations

import httpx
import orjson
import pytest
from mistralai.client import Mistral
from mistralai.client.models import ChatCompletionResponse, CompletionChunk, EmbeddingResponse
from upstream_calls import call as _call
from upstream_calls import served_fake
from upstream_calls import stream as _stream

from gateway_server.errors import UpstreamStatusError, UpstreamTimeoutError
from gateway_server.providers.mistral import MistralAdapter, MistralConfig
from gateway_server.routes import RouteType
from gateway_server.testing.fake_mistral import FakeMistral
from gateway_server.testing.fake_upstreams import Fault

pytestmark = pytest.mark.contract

KEY = "mi-contract-key"
MODEL = "mistral-small-latest"
CHAT = {
    "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello upstream"}]
}
TOOLS = {
    "messages": [{"role": "user", "content": "weather in Oslo"}],
    "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
}


fake_server, fake = served_fake(lambda: FakeMistral(api_key=KEY))


def _adapter(fake: FakeMistral, key: str = KEY) -> MistralAdapter:
    config = MistralConfig.model_validate({"mistral_api_key": key, "mistral_api_base": fake.api_base})
    return MistralAdapter(config, MODEL)


def test_mistral_chat_request_reaches_upstream_exactly(fake: FakeMistral) -> None:
    result = _call(_adapter(fake), RouteType.CHAT, {**CHAT, "seed": 5, "max_completion_tokens": 9, "n": 2})
    request = fake.last_request
    assert (request.method, request.path, request.query_string) == ("POST", "/v1/chat/completions", "")
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.json == {"model": MODEL, **CHAT, "n": 2, "max_tokens": 9, "random_seed": 5}
    assert result == {
        "id": "fake-cmpl-000001",
        "object": "chat.completion",
        "model": MODEL,
        "created": 1700000000,
        "choices": [
            {
                "index": i,
                "message": {"role": "assistant", "content": "hello upstream"},
                "finish_reason": "stop",
            }
            for i in range(2)
        ],
        "usage": {"prompt_tokens": 4, "completion_tokens": 4, "total_tokens": 8},
    }


def test_mistral_completions_embeddings_and_tool_round_trip(fake: FakeMistral) -> None:
    adapter = _adapter(fake)
    completion = _call(adapter, RouteType.COMPLETIONS, {"prompt": "one two three", "max_tokens": 2})
    assert completion["choices"] == [{"index": 0, "text": "one two", "finish_reason": "length"}]
    embedding = _call(adapter, RouteType.EMBEDDINGS, {"input": ["a", "b c"], "dimensions": 4})
    assert fake.last_request.path == "/v1/embeddings"
    assert fake.last_request.json == {"model": MODEL, "input": ["a", "b c"], "output_dimension": 4}
    assert [len(item["embedding"]) for item in embedding["data"]] == [4, 4]
    called = _call(adapter, RouteType.CHAT, dict(TOOLS))
    call = called["choices"][0]["message"]["tool_calls"][0]
    assert called["choices"][0]["message"]["content"] is None
    assert call["function"] == {"name": "get_weather", "arguments": '{"text":"weather in Oslo"}'}
    follow_up = [*TOOLS["messages"], {"role": "assistant", "content": None, "tool_calls": [call]}]
    follow_up.append({"role": "tool", "tool_call_id": call["id"], "content": "sunny"})
    answer = _call(adapter, RouteType.CHAT, {**TOOLS, "messages": follow_up})
    assert answer["choices"][0]["message"] == {"role": "assistant", "content": "sunny"}


def test_mistral_streams_text_and_tool_calls(fake: FakeMistral) -> None:
    adapter = _adapter(fake)
    chunks = _stream(
        adapter, RouteType.CHAT, {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    )
    assert fake.last_request.json == {"model": MODEL, **CHAT, "stream": True}
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == "hello upstream"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["usage"] == {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}
    tool_chunks = _stream(adapter, RouteType.CHAT, {**TOOLS, "stream": True})
    deltas = [d for c in tool_chunks for d in c["choices"][0]["delta"].get("tool_calls") or ()]
    assert [(d["index"], d["function"]["name"]) for d in deltas] == [(0, "get_weather")]
    assert tool_chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


OPENAI_ID = "call_abc123XYZ789def456ghi012"  # an id as OpenAI gives it: 29 characters with "_"
CARRIED_OVER = {
    **TOOLS,
    "messages": [
        *TOOLS["messages"],
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": OPENAI_ID, "type": "function", "function": {"name": "get_weather", "arguments": "{}"}},
                {
                    "id": "abcDEF123",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": "{}"},
                },
            ],
        },
        {"role": "tool", "tool_call_id": OPENAI_ID, "content": "sunny"},
        {"role": "tool", "tool_call_id": "abcDEF123", "content": "warm"},
    ],
}


def test_mistral_foreign_tool_call_ids_become_stable_nine_character_ids(fake: FakeMistral) -> None:
    answer = _call(_adapter(fake), RouteType.CHAT, CARRIED_OVER)
    sent = fake.last_request.json["messages"]
    assert sent[1:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "AHmkim53Z",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": "{}"},
                },
                {
                    "id": "abcDEF123",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": "{}"},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "AHmkim53Z", "content": "sunny"},
        {"role": "tool", "tool_call_id": "abcDEF123", "content": "warm"},
    ]
    assert answer["choices"][0]["message"] == {"role": "assistant", "content": "warm"}
    assert CARRIED_OVER["messages"][2]["tool_call_id"] == OPENAI_ID  # the caller's payload is untouched
    chunks = _stream(_adapter(fake), RouteType.CHAT, {**CARRIED_OVER, "stream": True})
    assert fake.last_request.json["messages"][1:] == sent[1:]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == "warm"


def test_mistral_fake_refuses_foreign_tool_call_ids_as_mistral_does(fake: FakeMistral) -> None:
    body = {"model": MODEL, **CARRIED_OVER}
    with httpx.Client(base_url=fake.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=5) as client:
        refused = client.post("/v1/chat/completions", json=body)
    assert refused.status_code == 400
    assert refused.json() == {
        "object": "error",
        "message": f"Tool call id was {OPENAI_ID} but must be a-z, A-Z, 0-9, with a length of 9.",
        "type": "invalid_function_call",
        "param": None,
        "code": "3280",
    }


def test_mistral_wrong_key_and_unknown_fields(fake: FakeMistral) -> None:
    with pytest.raises(UpstreamStatusError) as info:
        _call(_adapter(fake, key="wrong"), RouteType.CHAT, dict(CHAT))
    assert (info.value.upstream_status, info.value.status_code, info.value.reason) == (
        401,
        502,
        "Unauthorized",
    )
    with pytest.raises(UpstreamStatusError) as info:
        _call(_adapter(fake), RouteType.CHAT, {**CHAT, "prompt_cache": "x"})
    assert (info.value.status_code, info.value.reason) == (
        422,
        "prompt_cache: Extra inputs are not permitted",
    )


@pytest.mark.parametrize(
    ("status", "gateway_status"), [(400, 400), (403, 502), (404, 404), (500, 502), (503, 502)]
)
def test_mistral_upstream_errors_map_to_gateway_statuses(
    fake: FakeMistral, status: int, gateway_status: int
) -> None:
    fake.inject(Fault.error(status))
    with pytest.raises(UpstreamStatusError) as info:
        _call(_adapter(fake), RouteType.CHAT, dict(CHAT))
    assert info.value.status_code == gateway_status
    assert info.value.reason == f"Injected fault: status {status}"


def test_mistral_rate_limit_keeps_retry_after(fake: FakeMistral) -> None:
    fake.inject(Fault.rate_limited(retry_after=2))
    with pytest.raises(UpstreamStatusError) as info:
        _call(_adapter(fake), RouteType.CHAT, dict(CHAT))
    assert (info.value.status_code, info.value.retry_after) == (429, 2)


def test_mistral_timeout_is_a_504(fake: FakeMistral) -> None:
    fake.inject(Fault.slow(2))
    with pytest.raises(UpstreamTimeoutError) as info:
        _call(_adapter(fake), RouteType.EMBEDDINGS, {"input": "x"}, timeout=0.3)
    assert info.value.status_code == 504


def test_mistral_fake_answers_parse_with_the_official_sdk_models(fake: FakeMistral) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi there"}]}
    tools = TOOLS["tools"]
    with httpx.Client(base_url=fake.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=5) as client:
        for request in (body, {**body, "tools": tools}):
            ChatCompletionResponse.model_validate(client.post("/v1/chat/completions", json=request).json())
            with client.stream("POST", "/v1/chat/completions", json={**request, "stream": True}) as response:
                lines = [line[len("data: ") :] for line in response.iter_lines() if line.startswith("data: ")]
            assert lines[-1] == "[DONE]"
            for line in lines[:-1]:
                CompletionChunk.model_validate(orjson.loads(line))
        EmbeddingResponse.model_validate(
            client.post("/v1/embeddings", json={"model": "e", "input": ["a"]}).json()
        )


def test_mistral_official_sdk_client_talks_to_the_fake(fake: FakeMistral) -> None:
    with Mistral(api_key=KEY, server_url=fake.url) as client:
        answer = client.chat.complete(model=MODEL, messages=[{"role": "user", "content": "echo me"}])
        assert answer.choices[0].message.content == "echo me"
        pieces = [
            event.data.choices[0].delta.content
            for event in client.chat.stream(model=MODEL, messages=[{"role": "user", "content": "a b"}])
        ]
        assert "".join(pieces) == "a b"
        embedded = client.embeddings.create(model="mistral-embed", inputs=["a"])
        assert len(embedded.data[0].embedding) == fake.embedding_dimensions
