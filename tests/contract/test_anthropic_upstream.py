"""The anthropic adapter + the network module against FakeAnthropic on 127.0.0.1; the fake checked
against Anthropic's own SDK types so it cannot drift from the real wire format."""

from __future__ import annotations

import anthropic
import httpx
import orjson
import pydantic
import pytest
from upstream_calls import call as _call
from upstream_calls import served_fake
from upstream_calls import stream as _stream

from gateway_server.errors import UpstreamError, UpstreamStatusError, UpstreamTimeoutError
from gateway_server.providers.anthropic import AnthropicAdapter, AnthropicConfig
from gateway_server.routes import RouteType
from gateway_server.testing.fake_anthropic import FakeAnthropic
from gateway_server.testing.fake_upstreams import Fault

pytestmark = pytest.mark.contract

KEY = "sk-ant-contract-key"
MODEL = "claude-sonnet-5"
CHAT = {
    "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello upstream"}]
}
TOOLS = {
    "messages": [{"role": "user", "content": "weather in Oslo"}],
    "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
}


fake_server, fake = served_fake(lambda: FakeAnthropic(api_key=KEY))


def _adapter(fake: FakeAnthropic, key: str = KEY) -> AnthropicAdapter:
    config = AnthropicConfig.model_validate({"anthropic_api_key": key, "anthropic_api_base": fake.api_base})
    return AnthropicAdapter(config, MODEL)


def test_anthropic_chat_request_reaches_upstream_exactly(fake: FakeAnthropic) -> None:
    result = _call(_adapter(fake), RouteType.CHAT, {**CHAT, "temperature": 0.4, "stop": ["zzz"]})
    request = fake.last_request
    assert (request.method, request.path, request.query_string) == ("POST", "/v1/messages", "")
    assert request.headers["x-api-key"] == KEY
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert request.headers["content-type"] == "application/json"
    assert "authorization" not in request.headers
    assert request.json == {
        "model": MODEL,
        "max_tokens": 8192,
        "messages": [{"role": "user", "content": "hello upstream"}],
        "system": "be brief",
        "stop_sequences": ["zzz"],
        "temperature": 0.2,
    }
    assert result == {
        "id": "msg_fake000001",
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


def test_anthropic_completions_and_tool_round_trip(fake: FakeAnthropic) -> None:
    adapter = _adapter(fake)
    completion = _call(adapter, RouteType.COMPLETIONS, {"prompt": "one two three", "max_tokens": 2})
    assert fake.last_request.json["messages"] == [{"role": "user", "content": "one two three"}]
    assert completion["choices"] == [{"index": 0, "text": "one two", "finish_reason": "length"}]
    called = _call(adapter, RouteType.CHAT, dict(TOOLS))
    call = called["choices"][0]["message"]["tool_calls"][0]
    assert called["choices"][0]["finish_reason"] == "tool_calls"
    assert call["function"] == {"name": "get_weather", "arguments": '{"text":"weather in Oslo"}'}
    follow_up = {
        **TOOLS,
        "messages": [
            *TOOLS["messages"],
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": call["id"], "content": "sunny"},
        ],
    }
    answer = _call(adapter, RouteType.CHAT, follow_up)
    assert fake.last_request.json["messages"][-1] == {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": call["id"], "content": "sunny"}],
    }
    assert answer["choices"][0]["message"] == {"role": "assistant", "content": "sunny"}


def test_anthropic_streams_text_and_tool_calls(fake: FakeAnthropic) -> None:
    adapter = _adapter(fake)
    chunks = _stream(adapter, RouteType.CHAT, {**CHAT, "stream": True})
    assert fake.last_request.json["stream"] is True
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == "hello upstream"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["usage"] == {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}
    assert all("usage" not in chunk for chunk in chunks[:-1])
    tool_chunks = _stream(adapter, RouteType.CHAT, {**TOOLS, "stream": True})
    deltas = [d for c in tool_chunks for d in c["choices"][0]["delta"].get("tool_calls") or ()]
    assert {d["index"] for d in deltas} == {0}
    assert "".join(d["function"]["arguments"] for d in deltas) == '{"text":"weather in Oslo"}'
    assert tool_chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


SCHEMA = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}
JSON_SCHEMA = {
    "type": "json_schema",
    "json_schema": {"name": "echo", "description": "The echoed text.", "schema": SCHEMA, "strict": True},
}
FORCED = {"type": "tool", "name": "gateway_json_answer", "disable_parallel_tool_use": True}


def test_anthropic_json_schema_is_one_forced_tool_whose_call_is_the_content(fake: FakeAnthropic) -> None:
    result = _call(_adapter(fake), RouteType.CHAT, {**CHAT, "response_format": JSON_SCHEMA})
    assert fake.last_request.json == {
        "model": MODEL,
        "max_tokens": 8192,
        "messages": [{"role": "user", "content": "hello upstream"}],
        "system": "be brief",
        "tools": [{"name": "gateway_json_answer", "description": "The echoed text.", "input_schema": SCHEMA}],
        "tool_choice": FORCED,
    }
    assert result == {
        "id": "msg_fake000001",
        "object": "chat.completion",
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": '{"text":"hello upstream"}'},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6},
    }


def test_anthropic_json_object_asks_for_any_object_and_answers_completions(fake: FakeAnthropic) -> None:
    adapter = _adapter(fake)
    result = _call(adapter, RouteType.CHAT, {**CHAT, "response_format": {"type": "json_object"}})
    assert fake.last_request.json["tools"] == [
        {
            "name": "gateway_json_answer",
            "description": "Give your whole answer by calling this tool once: its input is the answer, as a "
            "JSON object that follows the input schema.",
            "input_schema": {"type": "object"},
        }
    ]
    assert fake.last_request.json["tool_choice"] == FORCED
    assert result["choices"][0]["message"] == {"role": "assistant", "content": '{"text":"hello upstream"}'}
    completion = _call(
        adapter, RouteType.COMPLETIONS, {"prompt": "one two", "response_format": {"type": "json_object"}}
    )
    assert completion["choices"] == [{"index": 0, "text": '{"text":"one two"}', "finish_reason": "stop"}]


def test_anthropic_streamed_json_answer_arrives_as_content_deltas(fake: FakeAnthropic) -> None:
    chunks = _stream(_adapter(fake), RouteType.CHAT, {**CHAT, "stream": True, "response_format": JSON_SCHEMA})
    assert fake.last_request.json["tool_choice"] == FORCED and fake.last_request.json["stream"] is True
    deltas = [chunk["choices"][0]["delta"] for chunk in chunks]
    assert deltas[0] == {"role": "assistant", "content": ""}
    assert all("tool_calls" not in delta for delta in deltas)
    pieces = [delta["content"] for delta in deltas[1:] if delta.get("content")]
    assert len(pieces) == 2  # the fake sends the input in two input_json_delta fragments
    assert "".join(pieces) == '{"text":"hello upstream"}'
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["usage"] == {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}


def test_anthropic_fake_refuses_forced_tool_use_with_thinking_as_anthropic_does(fake: FakeAnthropic) -> None:
    headers = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
    body = {
        "model": MODEL,
        "max_tokens": 4096,
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"name": "gateway_json_answer", "input_schema": {"type": "object"}}],
        "tool_choice": FORCED,
        "thinking": {"type": "enabled", "budget_tokens": 2048},
    }
    with httpx.Client(base_url=fake.url, headers=headers, timeout=5) as client:
        refused = client.post("/v1/messages", json=body)
        assert refused.status_code == 400
        assert (
            refused.json()["error"]["message"]
            == "Thinking may not be enabled when tool_choice forces tool use."
        )
        allowed = client.post("/v1/messages", json={**body, "thinking": {"type": "disabled"}})
        assert allowed.status_code == 200
        anthropic.types.Message.model_validate(allowed.json())


def test_anthropic_wrong_key_is_a_502_with_anthropics_reason(fake: FakeAnthropic) -> None:
    with pytest.raises(UpstreamStatusError) as info:
        _call(_adapter(fake, key="sk-ant-wrong"), RouteType.CHAT, dict(CHAT))
    assert (info.value.upstream_status, info.value.status_code) == (401, 502)
    assert info.value.reason == "invalid x-api-key"


@pytest.mark.parametrize(
    ("status", "gateway_status"),
    [(400, 400), (403, 502), (404, 404), (413, 413), (500, 502), (529, 502)],
)
def test_anthropic_upstream_errors_map_to_gateway_statuses(
    fake: FakeAnthropic, status: int, gateway_status: int
) -> None:
    fake.inject(Fault.error(status))
    with pytest.raises(UpstreamStatusError) as info:
        _call(_adapter(fake), RouteType.CHAT, dict(CHAT))
    assert info.value.status_code == gateway_status
    assert info.value.reason == f"Injected fault: status {status}"
    assert info.value.upstream_status == (503 if status == 529 else status)


def test_anthropic_rate_limit_keeps_retry_after(fake: FakeAnthropic) -> None:
    fake.inject(Fault.rate_limited(retry_after=7))
    with pytest.raises(UpstreamStatusError) as info:
        _call(_adapter(fake), RouteType.CHAT, dict(CHAT))
    assert (info.value.status_code, info.value.retry_after) == (429, 7)
    assert info.value.headers() == {"Retry-After": "7"}


def test_anthropic_timeout_is_a_504(fake: FakeAnthropic) -> None:
    fake.inject(Fault.slow(2))
    with pytest.raises(UpstreamTimeoutError) as info:
        _call(_adapter(fake), RouteType.CHAT, dict(CHAT), timeout=0.3)
    assert info.value.status_code == 504


def test_anthropic_stream_cut_short_is_an_upstream_error(fake: FakeAnthropic) -> None:
    adapter = _adapter(fake)
    fake.inject(Fault.cut_stream(after=3))
    with pytest.raises(UpstreamError):
        _stream(adapter, RouteType.CHAT, {**CHAT, "stream": True})


def test_anthropic_fake_answers_parse_with_the_official_sdk_types(fake: FakeAnthropic) -> None:
    headers = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
    body = {"model": MODEL, "max_tokens": 50, "messages": [{"role": "user", "content": "hi there"}]}
    tools = [{"name": "get_weather", "input_schema": {"type": "object"}}]
    with httpx.Client(base_url=fake.url, headers=headers, timeout=5) as client:
        for request in (body, {**body, "tools": tools}):
            anthropic.types.Message.model_validate(client.post("/v1/messages", json=request).json())
        for request in (body, {**body, "tools": tools}):
            with client.stream("POST", "/v1/messages", json={**request, "stream": True}) as response:
                lines = [line for line in response.iter_lines() if line.startswith("data: ")]
            # ping is a documented keep-alive event that the SDK skips rather than types
            data = [orjson.loads(line[len("data: ") :]) for line in lines]
            adapter = pydantic.TypeAdapter(anthropic.types.RawMessageStreamEvent)
            events = [adapter.validate_python(event) for event in data if event["type"] != "ping"]
            assert events[0].type == "message_start" and events[-1].type == "message_stop"
        failure = client.post("/v1/messages", json=body, headers={"x-api-key": "wrong"})
        assert failure.status_code == 401
        anthropic.types.ErrorResponse.model_validate(failure.json())


def test_anthropic_official_sdk_client_talks_to_the_fake(fake: FakeAnthropic) -> None:
    with anthropic.Anthropic(api_key=KEY, base_url=fake.url, max_retries=0) as client:
        message = client.messages.create(
            model=MODEL, max_tokens=20, messages=[{"role": "user", "content": "echo me"}]
        )
        assert message.content[0].text == "echo me" and message.stop_reason == "end_turn"
        with pytest.raises(anthropic.BadRequestError):
            client.messages.create(model=MODEL, max_tokens=20, messages=[{"role": "system", "content": "x"}])
