"""The gemini adapter + the network module against FakeGemini on 127.0.0.1; the fake checked against
Google's own SDK types (and client) so it cannot drift from the real wire format."""

from __future__ import annotations

import httpx
import orjson
import pytest
from google import genai
from google.genai import types
from upstream_calls import call as _call
from upstream_calls import served_fake
from upstream_calls import stream as _stream

from gateway_server.errors import UpstreamStatusError, UpstreamTimeoutError
from gateway_server.providers.gemini import GeminiAdapter, GeminiConfig
from gateway_server.routes import RouteType
from gateway_server.testing.fake_gemini import FakeGemini
from gateway_server.testing.fake_upstreams import Fault

pytestmark = pytest.mark.contract

KEY = "AIza-contract-key"
MODEL = "gemini-2.5-flash"
CHAT = {
    "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello upstream"}]
}
TOOLS = {
    "messages": [{"role": "user", "content": "weather in Oslo"}],
    "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
}


fake_server, fake = served_fake(lambda: FakeGemini(api_key=KEY))


def _adapter(fake: FakeGemini, key: str = KEY, model: str = MODEL) -> GeminiAdapter:
    return GeminiAdapter(
        GeminiConfig.model_validate({"gemini_api_key": key, "gemini_api_base": fake.api_base}), model
    )


def test_gemini_chat_request_reaches_upstream_exactly(fake: FakeGemini) -> None:
    result = _call(_adapter(fake), RouteType.CHAT, {**CHAT, "temperature": 0.4, "max_tokens": 9})
    request = fake.last_request
    assert (request.method, request.path) == ("POST", f"/v1beta/models/{MODEL}:generateContent")
    assert request.query_string == ""  # the key is never in the URL
    assert request.headers["x-goog-api-key"] == KEY
    assert request.json == {
        "contents": [{"role": "user", "parts": [{"text": "hello upstream"}]}],
        "systemInstruction": {"parts": [{"text": "be brief"}]},
        "generationConfig": {"maxOutputTokens": 9, "temperature": 0.4},
    }
    assert result == {
        "id": "fakeresp000001",
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


def test_gemini_completions_embeddings_and_tool_round_trip(fake: FakeGemini) -> None:
    adapter = _adapter(fake)
    completion = _call(adapter, RouteType.COMPLETIONS, {"prompt": "one two three", "max_tokens": 2, "n": 2})
    assert completion["choices"] == [
        {"index": i, "text": "one two", "finish_reason": "length"} for i in range(2)
    ]
    embedder = _adapter(fake, model="gemini-embedding-001")
    embedding = _call(embedder, RouteType.EMBEDDINGS, {"input": ["a", "b c"], "dimensions": 4})
    assert fake.last_request.path == "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    assert [len(item["embedding"]) for item in embedding["data"]] == [4, 4]
    called = _call(adapter, RouteType.CHAT, dict(TOOLS))
    call = called["choices"][0]["message"]["tool_calls"][0]
    assert called["choices"][0]["finish_reason"] == "tool_calls"
    assert call["function"] == {"name": "get_weather", "arguments": '{"text":"weather in Oslo"}'}
    follow_up = [*TOOLS["messages"], {"role": "assistant", "content": None, "tool_calls": [call]}]
    follow_up.append({"role": "tool", "tool_call_id": call["id"], "content": "sunny"})
    answer = _call(adapter, RouteType.CHAT, {**TOOLS, "messages": follow_up})
    assert fake.last_request.json["contents"][1:] == [
        {
            "role": "model",
            "parts": [{"functionCall": {"name": "get_weather", "args": {"text": "weather in Oslo"}}}],
        },
        {
            "role": "user",
            "parts": [{"functionResponse": {"name": "get_weather", "response": {"output": "sunny"}}}],
        },
    ]
    assert answer["choices"][0]["message"] == {"role": "assistant", "content": "sunny"}


def test_gemini_streams_over_sse(fake: FakeGemini) -> None:
    adapter = _adapter(fake)
    chunks = _stream(adapter, RouteType.CHAT, {**CHAT, "stream": True})
    request = fake.last_request
    assert (request.path, request.query_string) == (
        f"/v1beta/models/{MODEL}:streamGenerateContent",
        "alt=sse",
    )
    assert "stream" not in request.json
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == "hello upstream"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["usage"] == {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}
    assert all("usage" not in chunk for chunk in chunks[:-1])
    tool_chunks = _stream(adapter, RouteType.CHAT, {**TOOLS, "stream": True})
    deltas = [d for c in tool_chunks for d in c["choices"][0]["delta"].get("tool_calls") or ()]
    assert [(d["index"], d["function"]["name"]) for d in deltas] == [(0, "get_weather")]
    assert tool_chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_gemini_wrong_key_is_a_502_not_a_400(fake: FakeGemini) -> None:
    with pytest.raises(UpstreamStatusError) as info:
        _call(_adapter(fake, key="AIza-wrong"), RouteType.CHAT, dict(CHAT))
    assert (info.value.upstream_status, info.value.status_code) == (401, 502)
    assert info.value.reason == "API key not valid. Please pass a valid API key."


@pytest.mark.parametrize(
    ("status", "gateway_status"), [(400, 400), (403, 502), (404, 404), (500, 502), (503, 502)]
)
def test_gemini_upstream_errors_map_to_gateway_statuses(
    fake: FakeGemini, status: int, gateway_status: int
) -> None:
    fake.inject(Fault.error(status))
    with pytest.raises(UpstreamStatusError) as info:
        _call(_adapter(fake), RouteType.CHAT, dict(CHAT))
    assert info.value.status_code == gateway_status
    assert info.value.reason == f"Injected fault: status {status}"


def test_gemini_rate_limit_keeps_retry_after(fake: FakeGemini) -> None:
    fake.inject(Fault.rate_limited(retry_after=4))
    with pytest.raises(UpstreamStatusError) as info:
        _call(_adapter(fake), RouteType.CHAT, dict(CHAT))
    assert (info.value.status_code, info.value.retry_after) == (429, 4)


def test_gemini_timeout_is_a_504(fake: FakeGemini) -> None:
    fake.inject(Fault.slow(2))
    with pytest.raises(UpstreamTimeoutError) as info:
        _call(_adapter(fake), RouteType.CHAT, dict(CHAT), timeout=0.3)
    assert info.value.status_code == 504


def test_gemini_fake_answers_parse_with_the_official_sdk_types(fake: FakeGemini) -> None:
    body = {"contents": [{"role": "user", "parts": [{"text": "hi there"}]}]}
    tools = [{"functionDeclarations": [{"name": "f", "parametersJsonSchema": {"type": "object"}}]}]
    with httpx.Client(base_url=fake.api_base, headers={"x-goog-api-key": KEY}, timeout=5) as client:
        for request in (body, {**body, "tools": tools}):
            types.GenerateContentResponse.model_validate(
                client.post(f"/{MODEL}:generateContent", json=request).json()
            )
            url = f"/{MODEL}:streamGenerateContent?alt=sse"
            with client.stream("POST", url, json=request) as response:
                lines = [line for line in response.iter_lines() if line.startswith("data: ")]
            for line in lines:
                types.GenerateContentResponse.model_validate(orjson.loads(line[len("data: ") :]))
        embed = {"requests": [{"model": "models/e", "content": {"parts": [{"text": "a"}]}}]}
        types.EmbedContentResponse.model_validate(client.post("/e:batchEmbedContents", json=embed).json())


def test_gemini_official_sdk_client_talks_to_the_fake(fake: FakeGemini) -> None:
    options = {"base_url": fake.url, "api_version": "v1beta"}
    with genai.Client(api_key=KEY, http_options=options) as client:
        answer = client.models.generate_content(model=MODEL, contents="echo me")
        assert answer.text == "echo me" and answer.candidates[0].finish_reason == types.FinishReason.STOP
        pieces = [chunk.text for chunk in client.models.generate_content_stream(model=MODEL, contents="a b")]
        assert "".join(pieces) == "a b"
        embedded = client.models.embed_content(model="gemini-embedding-001", contents=["a", "b"])
        assert [len(item.values) for item in embedded.embeddings] == [8, 8]
