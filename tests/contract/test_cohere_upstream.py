"""The cohere adapter + the network module against FakeCohere on 127.0.0.1; the fake checked against
Cohere's own SDK types (and client) so it cannot drift from the real v2 wire format."""

from __future__ import annotations

import cohere
import httpx
import orjson
import pydantic
import pytest
from cohere.types import EmbedByTypeResponse
from cohere.v2.types import V2ChatResponse, V2ChatStreamResponse
from upstream_calls import call as _call
from upstream_calls import served_fake
from upstream_calls import stream as _stream

from gateway_server.errors import UpstreamStatusError, UpstreamTimeoutError
from gateway_server.providers.cohere import CohereAdapter, CohereConfig
from gateway_server.routes import RouteType
from gateway_server.testing.fake_cohere import FakeCohere
from gateway_server.testing.fake_upstreams import Fault

pytestmark = pytest.mark.contract

KEY = "co-contract-key"
MODEL = "command-a-03-2025"
CHAT = {
    "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello upstream"}]
}
TOOLS = {
    "messages": [{"role": "user", "content": "weather in Oslo"}],
    "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
}


fake_server, fake = served_fake(lambda: FakeCohere(api_key=KEY))


def _adapter(fake: FakeCohere, key: str = KEY, model: str = MODEL) -> CohereAdapter:
    return CohereAdapter(
        CohereConfig.model_validate({"cohere_api_key": key, "cohere_api_base": fake.api_base}), model
    )


def test_cohere_chat_request_reaches_upstream_exactly(fake: FakeCohere) -> None:
    result = _call(_adapter(fake), RouteType.CHAT, {**CHAT, "top_p": 0.5, "stop": "zzz", "max_tokens": 20})
    request = fake.last_request
    assert (request.method, request.path, request.query_string) == ("POST", "/v2/chat", "")
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["content-type"] == "application/json"
    assert request.json == {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hello upstream"},
        ],
        "max_tokens": 20,
        "stop_sequences": ["zzz"],
        "p": 0.5,
    }
    assert result == {
        "id": "fake-chat-000001",
        "object": "chat.completion",
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "hello upstream"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6},
    }


def test_cohere_completions_embeddings_and_tool_round_trip(fake: FakeCohere) -> None:
    adapter = _adapter(fake)
    completion = _call(adapter, RouteType.COMPLETIONS, {"prompt": "one two three", "max_tokens": 2})
    assert fake.last_request.path == "/v2/chat"
    assert completion["choices"] == [{"index": 0, "text": "one two", "finish_reason": "length"}]
    embedding = _call(
        _adapter(fake, model="embed-v4.0"), RouteType.EMBEDDINGS, {"input": ["a", "b c"], "dimensions": 4}
    )
    assert fake.last_request.path == "/v2/embed"
    assert fake.last_request.json == {
        "model": "embed-v4.0",
        "texts": ["a", "b c"],
        "input_type": "search_document",
        "embedding_types": ["float"],
        "output_dimension": 4,
    }
    assert [len(item["embedding"]) for item in embedding["data"]] == [4, 4]
    assert embedding["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
    called = _call(adapter, RouteType.CHAT, dict(TOOLS))
    call = called["choices"][0]["message"]["tool_calls"][0]
    assert called["choices"][0]["finish_reason"] == "tool_calls"
    assert call["function"] == {"name": "get_weather", "arguments": '{"text":"weather in Oslo"}'}
    follow_up = [*TOOLS["messages"], {"role": "assistant", "content": None, "tool_calls": [call]}]
    follow_up.append({"role": "tool", "tool_call_id": call["id"], "content": "sunny"})
    answer = _call(adapter, RouteType.CHAT, {**TOOLS, "messages": follow_up})
    assert fake.last_request.json["messages"][1:] == [
        {"role": "assistant", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": "sunny"},
    ]
    assert answer["choices"][0]["message"] == {"role": "assistant", "content": "sunny"}


def test_cohere_streams_text_and_tool_calls(fake: FakeCohere) -> None:
    adapter = _adapter(fake)
    chunks = _stream(adapter, RouteType.CHAT, {**CHAT, "stream": True})
    assert fake.last_request.json["stream"] is True
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == "hello upstream"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["usage"] == {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}
    tool_chunks = _stream(adapter, RouteType.CHAT, {**TOOLS, "stream": True})
    deltas = [d for c in tool_chunks for d in c["choices"][0]["delta"].get("tool_calls") or ()]
    assert {d["index"] for d in deltas} == {0}
    assert "".join(d["function"]["arguments"] for d in deltas) == '{"text":"weather in Oslo"}'
    assert tool_chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    text = _stream(adapter, RouteType.COMPLETIONS, {"prompt": "a b", "stream": True})
    assert [c["choices"][0]["text"] for c in text] == ["a ", "b", ""]


def test_cohere_wrong_key_is_a_502_with_coheres_reason(fake: FakeCohere) -> None:
    with pytest.raises(UpstreamStatusError) as info:
        _call(_adapter(fake, key="wrong"), RouteType.CHAT, dict(CHAT))
    assert (info.value.upstream_status, info.value.status_code, info.value.reason) == (
        401,
        502,
        "invalid api token",
    )


@pytest.mark.parametrize(
    ("status", "gateway_status"),
    [(400, 400), (403, 502), (404, 404), (422, 422), (498, 502), (500, 502), (503, 502)],
)
def test_cohere_upstream_errors_map_to_gateway_statuses(
    fake: FakeCohere, status: int, gateway_status: int
) -> None:
    fake.inject(Fault.error(status))
    with pytest.raises(UpstreamStatusError) as info:
        _call(_adapter(fake), RouteType.CHAT, dict(CHAT))
    assert info.value.status_code == gateway_status
    assert info.value.reason == f"Injected fault: status {status}"


def test_cohere_rate_limit_keeps_retry_after(fake: FakeCohere) -> None:
    fake.inject(Fault.rate_limited(retry_after=3))
    with pytest.raises(UpstreamStatusError) as info:
        _call(_adapter(fake), RouteType.EMBEDDINGS, {"input": "x"})
    assert (info.value.status_code, info.value.retry_after) == (429, 3)


def test_cohere_timeout_is_a_504(fake: FakeCohere) -> None:
    fake.inject(Fault.slow(2))
    with pytest.raises(UpstreamTimeoutError) as info:
        _call(_adapter(fake), RouteType.CHAT, dict(CHAT), timeout=0.3)
    assert info.value.status_code == 504


def test_cohere_fake_answers_parse_with_the_official_sdk_types(fake: FakeCohere) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi there"}]}
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    with httpx.Client(base_url=fake.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=5) as client:
        for request in (body, {**body, "tools": tools}):
            V2ChatResponse.model_validate(client.post("/v2/chat", json=request).json())
            with client.stream("POST", "/v2/chat", json={**request, "stream": True}) as response:
                lines = [line for line in response.iter_lines() if line.startswith("data: ")]
            adapter = pydantic.TypeAdapter(V2ChatStreamResponse)
            events = [adapter.validate_python(orjson.loads(line[len("data: ") :])) for line in lines]
            assert events[0].type == "message-start" and events[-1].type == "message-end"
        embed = {
            "model": "embed-v4.0",
            "texts": ["a"],
            "input_type": "classification",
            "embedding_types": ["float"],
        }
        EmbedByTypeResponse.model_validate(client.post("/v2/embed", json=embed).json())


def test_cohere_official_sdk_client_talks_to_the_fake(fake: FakeCohere) -> None:
    with cohere.ClientV2(api_key=KEY, base_url=fake.url) as client:
        answer = client.chat(model=MODEL, messages=[{"role": "user", "content": "echo me"}])
        assert answer.message.content[0].text == "echo me" and answer.finish_reason == "COMPLETE"
        events = [
            event.type
            for event in client.chat_stream(model=MODEL, messages=[{"role": "user", "content": "a b"}])
        ]
        assert events == [
            "message-start",
            "content-start",
            "content-delta",
            "content-delta",
            "content-end",
            "message-end",
        ]
        embedded = client.embed(
            model="embed-v4.0", texts=["a"], input_type="search_query", embedding_types=["float"]
        )
        assert len(embedded.embeddings.float_[0]) == fake.embedding_dimensions
