"""Cohere (API v2): the exact chat/embed requests and the parsed answers and stream chunks (pure)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from pydantic import ValidationError

from gateway_server.config import load_config
from gateway_server.errors import InvalidRequestError, UpstreamStatusError, UpstreamTimeoutError
from gateway_server.providers import get_adapter_class
from gateway_server.providers.cohere import CohereAdapter, CohereConfig
from gateway_server.providers.streaming import StreamEvent
from gateway_server.routes import RouteType

SAMPLE = Path(__file__).parents[3] / "sample-configs" / "cohere.yaml"
TOOL = {
    "type": "function",
    "function": {"name": "lookup", "description": "d", "parameters": {"type": "object"}},
}
OTHER = {"type": "function", "function": {"name": "other", "parameters": {"type": "object"}, "strict": True}}


def _adapter(**config: str) -> CohereAdapter:
    return CohereAdapter(CohereConfig.model_validate({"cohere_api_key": "co-test", **config}), "command-a")


def _events(route_type: RouteType, events: list[dict]) -> list[dict]:
    adapter, state, chunks = _adapter(), {}, []
    for data in events:
        chunks += adapter.parse_stream_event(
            route_type, StreamEvent(orjson.dumps(data).decode(), data["type"]), state
        )
    return chunks


def test_cohere_build_chat_request_keeps_roles_and_renames_parameters() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": '{"q":"x"}'}}
    payload = {
        "messages": [
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": "Find x"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "c1", "content": "found"},
        ],
        "temperature": 0.7,
        "top_p": 0.5,
        "max_completion_tokens": 64,
        "stop": ["END"],
        "seed": 3,
        "tools": [TOOL, OTHER],
        "tool_choice": "required",
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "s", "schema": {"type": "object"}},
        },
        "k": 10,
    }
    request = _adapter().build_chat_request(payload)
    assert request.url == "https://api.cohere.com/v2/chat"
    assert dict(request.headers) == {
        "Authorization": "Bearer co-test",
        "Content-Type": "application/json",
        "Accept": "application/json",
    }
    assert request.body == {
        "model": "command-a",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Find x"},
            {"role": "assistant", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "c1", "content": "found"},
        ],
        "max_tokens": 64,
        "stop_sequences": ["END"],
        "p": 0.5,
        "tools": [
            {
                "type": "function",
                "function": {"name": "lookup", "description": "d", "parameters": {"type": "object"}},
            },
            {"type": "function", "function": {"name": "other", "parameters": {"type": "object"}}},
        ],
        "strict_tools": True,
        "tool_choice": "REQUIRED",
        "response_format": {"type": "json_object", "json_schema": {"type": "object"}},
        "temperature": 0.7,
        "seed": 3,
        "k": 10,
    }


def test_cohere_named_tool_choice_offers_only_that_tool() -> None:
    payload = {
        "messages": [{"role": "user", "content": "x"}],
        "tools": [TOOL, OTHER],
        "tool_choice": {"type": "function", "function": {"name": "lookup"}},
    }
    body = _adapter().build_chat_request(payload).body
    assert [tool["function"]["name"] for tool in body["tools"]] == ["lookup"]
    assert body["tool_choice"] == "REQUIRED"
    assert _adapter().build_chat_request({**payload, "tool_choice": "none"}).body["tool_choice"] == "NONE"
    assert "tool_choice" not in _adapter().build_chat_request({**payload, "tool_choice": "auto"}).body


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"n": 3}, "n"),
        ({"logit_bias": {"1": 1}}, "logit_bias"),
        ({"logprobs": True}, "logprobs"),
        ({"user": "u"}, "user"),
        ({"parallel_tool_calls": False}, "parallel_tool_calls"),
    ],
)
def test_cohere_refuses_parameters_without_equivalent(extra: dict, param: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        _adapter().build_chat_request({"messages": [{"role": "user", "content": "x"}], **extra})
    assert info.value.param == param and param in info.value.message


def test_cohere_completions_use_v2_chat() -> None:
    adapter = _adapter()
    request = adapter.build_completions_request({"prompt": "Say hi", "max_tokens": 5, "stream": True})
    assert request.url == "https://api.cohere.com/v2/chat"
    assert request.body == {
        "model": "command-a",
        "messages": [{"role": "user", "content": "Say hi"}],
        "stream": True,
        "max_tokens": 5,
    }
    answer = {
        "id": "r1",
        "finish_reason": "COMPLETE",
        "message": {"role": "assistant", "content": [{"type": "text", "text": "hi"}]},
        "usage": {
            "billed_units": {"input_tokens": 2, "output_tokens": 1},
            "tokens": {"input_tokens": 9, "output_tokens": 1},
        },
    }
    assert adapter.parse_completions_response(answer) == {
        "id": "r1",
        "object": "text_completion",
        "model": "command-a",
        "choices": [{"index": 0, "text": "hi", "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 1, "total_tokens": 10},
    }


def test_cohere_parse_chat_response_with_tool_calls_drops_the_tool_plan() -> None:
    body = {
        "id": "r2",
        "finish_reason": "TOOL_CALL",
        "message": {
            "role": "assistant",
            "tool_plan": "I will look it up.",
            "tool_calls": [
                {"id": "t1", "type": "function", "function": {"name": "lookup", "arguments": '{"q":"x"}'}}
            ],
        },
        "usage": {"billed_units": {"input_tokens": 5.0, "output_tokens": 3.0}},
    }
    assert _adapter().parse_response(RouteType.CHAT, body) == {
        "id": "r2",
        "object": "chat.completion",
        "model": "command-a",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "t1",
                            "type": "function",
                            "function": {"name": "lookup", "arguments": '{"q":"x"}'},
                        }
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
    }


@pytest.mark.parametrize(
    ("reason", "finish"),
    [("COMPLETE", "stop"), ("STOP_SEQUENCE", "stop"), ("MAX_TOKENS", "length"), ("TOOL_CALL", "tool_calls")],
)
def test_cohere_parse_chat_maps_finish_reason(reason: str, finish: str) -> None:
    body = {"id": "r", "finish_reason": reason, "message": {"content": [{"type": "text", "text": "x"}]}}
    assert _adapter().parse_chat_response(body)["choices"][0]["finish_reason"] == finish


def test_cohere_error_and_timeout_finishes_are_upstream_errors() -> None:
    with pytest.raises(UpstreamStatusError) as info:
        _adapter().parse_chat_response({"id": "r", "finish_reason": "ERROR", "message": {}})
    assert info.value.status_code == 502
    with pytest.raises(UpstreamTimeoutError):
        _adapter().parse_chat_response({"id": "r", "finish_reason": "TIMEOUT", "message": {}})


def test_cohere_embeddings_request_and_response() -> None:
    adapter = _adapter()
    request = adapter.build_embeddings_request(
        {"input": ["a", "b"], "dimensions": 256, "input_type": "search_query"}
    )
    assert request.url == "https://api.cohere.com/v2/embed"
    assert request.body == {
        "model": "command-a",
        "texts": ["a", "b"],
        "input_type": "search_query",
        "embedding_types": ["float"],
        "output_dimension": 256,
    }
    assert adapter.build_embeddings_request({"input": "a"}).body["input_type"] == "search_document"
    with pytest.raises(InvalidRequestError, match="token ids"):
        adapter.build_embeddings_request({"input": [[1, 2]]})
    with pytest.raises(InvalidRequestError, match="'encoding_format'"):
        adapter.build_embeddings_request({"input": "a", "encoding_format": "base64"})
    body = {
        "id": "e",
        "embeddings": {"float": [[0.1, 0.2], [0.3, 0.4]]},
        "texts": ["a", "b"],
        "meta": {"api_version": {"version": "2"}, "billed_units": {"input_tokens": 2.0}},
        "response_type": "embeddings_by_type",
    }
    assert adapter.parse_response(RouteType.EMBEDDINGS, body) == {
        "object": "list",
        "data": [
            {"object": "embedding", "index": 0, "embedding": [0.1, 0.2]},
            {"object": "embedding", "index": 1, "embedding": [0.3, 0.4]},
        ],
        "model": "command-a",
        "usage": {"prompt_tokens": 2, "total_tokens": 2},
    }


def test_cohere_stream_events_become_standard_chunks() -> None:
    events = [
        {"type": "message-start", "id": "s1", "delta": {"message": {"role": "assistant"}}},
        {"type": "tool-plan-delta", "delta": {"message": {"tool_plan": "I will"}}},
        {"type": "tool-call-start", "index": 0, "delta": {"message": {"tool_calls": {"id": "t1", "type": "function", "function": {"name": "f", "arguments": ""}}}}},
        {"type": "tool-call-delta", "index": 0, "delta": {"message": {"tool_calls": {"function": {"arguments": '{"a":1}'}}}}},
        {"type": "tool-call-end", "index": 0},
        {"type": "content-start", "index": 0, "delta": {"message": {"content": {"type": "text", "text": ""}}}},
        {"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": "ok"}}}},
        {"type": "content-end", "index": 0},
        {"type": "message-end", "delta": {"finish_reason": "TOOL_CALL", "usage": {"tokens": {"input_tokens": 4, "output_tokens": 6}}}},
    ]  # fmt: skip

    def chunk(delta: dict, finish: str | None = None, **extra: dict) -> dict:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return {
            "object": "chat.completion.chunk",
            "model": "command-a",
            "choices": [choice],
            **extra,
            "id": "s1",
        }

    assert _events(RouteType.CHAT, events) == [
        chunk({"role": "assistant", "content": ""}),
        chunk({"tool_calls": [{"index": 0, "id": "t1", "type": "function", "function": {"name": "f", "arguments": ""}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a":1}'}}]}),
        chunk({"content": "ok"}),
        chunk({}, "tool_calls", usage={"prompt_tokens": 4, "completion_tokens": 6, "total_tokens": 10}),
    ]  # fmt: skip


def test_cohere_stream_error_in_message_end_is_an_upstream_error() -> None:
    events = [
        {"type": "message-start", "id": "s"},
        {"type": "message-end", "delta": {"error": "model crashed"}},
    ]
    with pytest.raises(UpstreamStatusError, match="model crashed"):
        _events(RouteType.COMPLETIONS, events)


def test_cohere_error_statuses() -> None:
    adapter = _adapter()
    assert adapter.map_error_status(498, {}) == 401
    assert adapter.map_error_status(499, {}) == 503
    assert adapter.map_error_status(429, {}) == 429
    assert adapter.error_reason(400, {"id": "x", "message": "invalid request: bad"}) == "invalid request: bad"


def test_cohere_config_validates_the_base() -> None:
    assert _adapter(cohere_api_base="http://127.0.0.1:1/v2/").chat_url == "http://127.0.0.1:1/v2/chat"
    with pytest.raises(ValidationError, match="API v2"):
        _adapter(cohere_api_base="https://api.cohere.ai/v1")
    with pytest.raises(ValidationError, match="http:// or https://"):
        _adapter(cohere_api_base="ftp://x")


def test_cohere_sample_config_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COHERE_API_KEY", "co-sample")
    config = load_config(SAMPLE)
    assert {route.route_type for route in config.routes} == set(RouteType)
    for route in config.routes:
        assert get_adapter_class(route.model.provider) is CohereAdapter
        assert route.model.config.cohere_api_key.get() == "co-sample"
