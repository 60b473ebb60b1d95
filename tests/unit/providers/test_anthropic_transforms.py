"""Anthropic: the exact Messages API requests and the parsed answers and stream chunks (pure)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from pydantic import ValidationError

from gateway_server.config import load_config
from gateway_server.errors import InvalidRequestError, UnsupportedRouteTypeError, UpstreamStatusError
from gateway_server.providers import get_adapter_class
from gateway_server.providers.anthropic import DEFAULT_MAX_TOKENS, AnthropicAdapter, AnthropicConfig
from gateway_server.providers.streaming import StreamEvent
from gateway_server.routes import RouteType

SAMPLE = Path(__file__).parents[3] / "sample-configs" / "anthropic.yaml"
TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def _adapter(**config: str) -> AnthropicAdapter:
    settings = {"anthropic_api_key": "sk-ant-test", **config}
    return AnthropicAdapter(AnthropicConfig.model_validate(settings), "claude-sonnet-4-5")


def _events(adapter: AnthropicAdapter, route_type: RouteType, events: list[tuple[str, dict]]) -> list[dict]:
    state: dict = {}
    chunks = []
    for name, data in events:
        chunks += adapter.parse_stream_event(
            route_type, StreamEvent(orjson.dumps(data).decode(), name), state
        )
    return chunks


def test_anthropic_build_chat_request_translates_the_whole_conversation() -> None:
    payload = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": "Answer in French."},
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "toolu_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"},
            {"role": "user", "content": [{"type": "text", "text": "And tomorrow?"}]},
        ],
        "temperature": 1.0,
        "top_p": 0.9,
        "max_tokens": 300,
        "stop": "END",
        "tools": [TOOL],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "parallel_tool_calls": False,
        "user": "user-42",
        "top_k": 5,
    }
    request = _adapter().build_chat_request(payload)
    assert request.url == "https://api.anthropic.com/v1/messages"
    assert dict(request.headers) == {
        "x-api-key": "sk-ant-test",
        "anthropic-version": "2023-06-01",
        "content-type": "application/json",
    }
    assert request.body == {
        "model": "claude-sonnet-4-5",
        "max_tokens": 300,
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
                    {"type": "text", "text": "And tomorrow?"},
                ],
            },
        ],
        "system": "Be brief.\nAnswer in French.",
        "stop_sequences": ["END"],
        "temperature": 0.5,
        "tools": [
            {
                "name": "get_weather",
                "description": "Weather of a city",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
            }
        ],
        "tool_choice": {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
        "metadata": {"user_id": "user-42"},
        "top_p": 0.9,
        "top_k": 5,
    }


def test_anthropic_build_chat_request_defaults_max_tokens_and_streams() -> None:
    body = (
        _adapter()
        .build_stream_request(
            RouteType.CHAT,
            {"messages": [{"role": "user", "content": "hi"}], "stream": True, "stream_options": {}},
        )
        .body
    )
    assert body == {
        "model": "claude-sonnet-4-5",
        "max_tokens": DEFAULT_MAX_TOKENS,
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
    }


def test_anthropic_images_become_base64_or_url_sources() -> None:
    content = [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]
    body = _adapter().build_chat_request({"messages": [{"role": "user", "content": content}]}).body
    assert body["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "what is this?"},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0K"},
                },
                {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
            ],
        }
    ]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [("auto", {"type": "auto"}), ("none", {"type": "none"}), ("required", {"type": "any"})],
)
def test_anthropic_tool_choice_maps(choice: str, expected: dict) -> None:
    payload = {"messages": [{"role": "user", "content": "x"}], "tools": [TOOL], "tool_choice": choice}
    assert _adapter().build_chat_request(payload).body["tool_choice"] == expected


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"n": 2}, "n"),
        ({"presence_penalty": 0.5}, "presence_penalty"),
        ({"frequency_penalty": 0.5}, "frequency_penalty"),
        ({"logit_bias": {"1": 2}}, "logit_bias"),
        ({"seed": 7}, "seed"),
    ],
)
def test_anthropic_refuses_parameters_without_equivalent(extra: dict, param: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        _adapter().build_chat_request({"messages": [{"role": "user", "content": "x"}], **extra})
    assert info.value.param == param and info.value.status_code == 400
    assert param in info.value.message


JSON_OBJECT = {"type": "json_object"}


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"response_format": JSON_OBJECT, "tools": [TOOL]}, "tools"),
        ({"response_format": JSON_OBJECT, "tool_choice": "none"}, "tool_choice"),
        (
            {"response_format": JSON_OBJECT, "thinking": {"type": "enabled", "budget_tokens": 2048}},
            "thinking",
        ),
        ({"response_format": {"type": "json_schema"}}, "response_format.json_schema"),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "l", "schema": {"type": "array"}},
                }
            },
            "response_format.json_schema.schema",
        ),
        ({"response_format": {"type": "xml"}}, "response_format"),
        (
            {"tools": [{"type": "function", "function": {"name": "gateway_json_answer"}}]},
            "tools[0].function.name",
        ),
    ],
)
def test_anthropic_refuses_response_format_combinations_that_cannot_work(extra: dict, param: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        _adapter().build_chat_request({"messages": [{"role": "user", "content": "x"}], **extra})
    assert (info.value.param, info.value.status_code) == (param, 400)


def test_anthropic_response_format_text_and_disabled_thinking_change_nothing() -> None:
    plain = {"messages": [{"role": "user", "content": "x"}]}
    body = _adapter().build_chat_request({**plain, "response_format": {"type": "text"}}).body
    assert body == _adapter().build_chat_request(plain).body
    thinking = {"type": "disabled"}
    body = _adapter().build_chat_request({**plain, "response_format": JSON_OBJECT, "thinking": thinking}).body
    assert body["thinking"] == thinking and body["tool_choice"]["name"] == "gateway_json_answer"


def test_anthropic_native_keys_pass_unless_the_gateway_sets_them() -> None:
    adapter = _adapter()
    plain = adapter.build_chat_request({"messages": [{"role": "user", "content": "x"}], "system": "native"})
    assert plain.body["system"] == "native"
    messages = [{"role": "system", "content": "s"}, {"role": "user", "content": "x"}]
    with pytest.raises(InvalidRequestError) as info:
        adapter.build_chat_request({"messages": messages, "system": "native"})
    assert info.value.param == "system"


def test_anthropic_completions_go_through_messages() -> None:
    adapter = _adapter()
    request = adapter.build_completions_request({"prompt": "Once upon", "max_tokens": 10, "stop": ["."]})
    assert request.url.endswith("/messages")
    assert request.body == {
        "model": "claude-sonnet-4-5",
        "max_tokens": 10,
        "messages": [{"role": "user", "content": "Once upon"}],
        "stop_sequences": ["."],
    }
    with pytest.raises(InvalidRequestError, match="one prompt per request"):
        adapter.build_completions_request({"prompt": ["a", "b"]})
    with pytest.raises(InvalidRequestError, match="'echo'"):
        adapter.build_completions_request({"prompt": "a", "echo": True})
    answer = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [{"type": "text", "text": " a time"}],
        "stop_reason": "max_tokens",
        "stop_sequence": None,
        "usage": {"input_tokens": 3, "output_tokens": 2},
    }
    assert adapter.parse_completions_response(answer) == {
        "id": "msg_1",
        "object": "text_completion",
        "model": "claude-sonnet-4-5",
        "choices": [{"index": 0, "text": " a time", "finish_reason": "length"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    }


def test_anthropic_has_no_embeddings() -> None:
    with pytest.raises(UnsupportedRouteTypeError) as info:
        _adapter().build_embeddings_request({"input": "x"})
    assert info.value.status_code == 501


def test_anthropic_parse_chat_response_with_text_tool_use_and_cached_tokens() -> None:
    body = {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "sig"},
            {"type": "text", "text": "Let me check."},
            {"type": "tool_use", "id": "toolu_9", "name": "get_weather", "input": {"city": "Oslo"}},
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 10,
            "cache_creation_input_tokens": 5,
            "cache_read_input_tokens": 20,
            "output_tokens": 7,
        },
    }
    assert _adapter().parse_response(RouteType.CHAT, body) == {
        "id": "msg_01",
        "object": "chat.completion",
        "model": "claude-sonnet-4-5-20250929",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Let me check.",
                    "tool_calls": [
                        {
                            "id": "toolu_9",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                        }
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {"prompt_tokens": 35, "completion_tokens": 7, "total_tokens": 42},
    }


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("pause_turn", "stop"),
        ("model_context_window_exceeded", "length"),
    ],
)
def test_anthropic_parse_chat_maps_stop_reason(stop_reason: str, finish: str) -> None:
    body = {
        "id": "m",
        "content": [{"type": "text", "text": "x"}],
        "stop_reason": stop_reason,
        "usage": {"input_tokens": 1, "output_tokens": 1},
    }
    assert _adapter().parse_chat_response(body)["choices"][0]["finish_reason"] == finish


def test_anthropic_stream_events_become_standard_chunks() -> None:
    events = [
        ("message_start", {"type": "message_start", "message": {"id": "msg_s", "type": "message", "role": "assistant", "model": "claude-x", "content": [], "stop_reason": None, "usage": {"input_tokens": 12, "output_tokens": 1}}}),
        ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ("ping", {"type": "ping"}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("content_block_start", {"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_a", "name": "f", "input": {}}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": '{"a":'}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "1}"}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 1}),
        ("content_block_start", {"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "toolu_b", "name": "g", "input": {}}}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None}, "usage": {"output_tokens": 30}}),
        ("message_stop", {"type": "message_stop"}),
    ]  # fmt: skip

    def chunk(delta: dict, finish: str | None = None, **extra: dict) -> dict:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return {
            "object": "chat.completion.chunk",
            "model": "claude-x",
            "choices": [choice],
            **extra,
            "id": "msg_s",
        }

    assert _events(_adapter(), RouteType.CHAT, events) == [
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Hi"}),
        chunk({"tool_calls": [{"index": 0, "id": "toolu_a", "type": "function", "function": {"name": "f", "arguments": ""}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a":'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}),
        chunk({"tool_calls": [{"index": 1, "id": "toolu_b", "type": "function", "function": {"name": "g", "arguments": ""}}]}),
        chunk({}, "tool_calls", usage={"prompt_tokens": 12, "completion_tokens": 30, "total_tokens": 42}),
    ]  # fmt: skip


def test_anthropic_stream_for_completions_carries_text_and_final_usage() -> None:
    events = [
        ("message_start", {"type": "message_start", "message": {"id": "m", "model": "claude-x", "usage": {"input_tokens": 2, "output_tokens": 1}}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "ok"}}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 1}}),
    ]  # fmt: skip
    assert _events(_adapter(), RouteType.COMPLETIONS, events) == [
        {"object": "text_completion", "model": "claude-x", "choices": [{"index": 0, "text": "ok", "finish_reason": None}], "id": "m"},
        {
            "object": "text_completion",
            "model": "claude-x",
            "choices": [{"index": 0, "text": "", "finish_reason": "stop"}],
            "id": "m",
            "usage": {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3},
        },
    ]  # fmt: skip


def test_anthropic_stream_error_event_is_an_upstream_error() -> None:
    adapter = _adapter()
    event = StreamEvent(
        '{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}', "error"
    )
    with pytest.raises(UpstreamStatusError) as info:
        adapter.parse_stream_event(RouteType.CHAT, event, {})
    assert (info.value.upstream_status, info.value.status_code, info.value.reason) == (503, 502, "Overloaded")


def test_anthropic_maps_529_overloaded_to_503_and_keeps_the_message() -> None:
    adapter = _adapter()
    body = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    assert adapter.map_error_status(529, body) == 503
    assert adapter.map_error_status(429, body) == 429
    assert adapter.error_reason(529, body) == "Overloaded"


def test_anthropic_config_validates_base_and_version() -> None:
    adapter = _adapter(anthropic_api_base="http://127.0.0.1:9/v1/", anthropic_version="2024-01-01")
    assert adapter.url == "http://127.0.0.1:9/v1/messages"
    assert adapter.headers["anthropic-version"] == "2024-01-01"
    with pytest.raises(ValidationError, match="http:// or https://"):
        _adapter(anthropic_api_base="api.anthropic.com")
    with pytest.raises(ValidationError, match="API version date"):
        _adapter(anthropic_version="latest")
    with pytest.raises(ValidationError, match="Extra inputs"):
        AnthropicConfig.model_validate({"anthropic_api_key": "k", "anthropic_key": "typo"})
    assert "sk-ant-test" not in repr(_adapter().config)


def test_anthropic_sample_config_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-sample")
    config = load_config(SAMPLE)
    assert {route.route_type for route in config.routes} == {RouteType.CHAT, RouteType.COMPLETIONS}
    for route in config.routes:
        assert get_adapter_class(route.model.provider) is AnthropicAdapter
        assert route.model.config.anthropic_api_key.get() == "sk-ant-sample"
        assert route.model.config.anthropic_api_key.source == "$ANTHROPIC_API_KEY"


@pytest.mark.parametrize(("stop_reason", "finish"), [("tool_use", "stop"), ("max_tokens", "length")])
def test_anthropic_parse_chat_json_answer_becomes_the_content(stop_reason: str, finish: str) -> None:
    body = {
        "id": "msg_1",
        "model": "claude-sonnet-4-5",
        "content": [
            {"type": "tool_use", "id": "toolu_1", "name": "gateway_json_answer", "input": {"a": [1, 2]}}
        ],
        "stop_reason": stop_reason,
        "usage": {"input_tokens": 3, "output_tokens": 5},
    }
    choice = _adapter().parse_chat_response(body)["choices"][0]
    assert choice == {
        "index": 0,
        "message": {"role": "assistant", "content": '{"a":[1,2]}'},
        "finish_reason": finish,
    }
