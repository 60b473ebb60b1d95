"""Hugging Face TGI: /generate requests and answers, the Messages API for chat, stream events (pure)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from gateway_server.errors import InvalidRequestError, UpstreamStatusError
from gateway_server.providers import get_adapter_class
from gateway_server.providers.huggingface_text_generation_inference import TGIAdapter, TGIConfig
from gateway_server.providers.streaming import StreamEvent
from gateway_server.routes import RouteType

URL = "http://tgi.internal:8080"


def _adapter(model: str | None = "llama-3-8b") -> TGIAdapter:
    return TGIAdapter(TGIConfig.model_validate({"hf_server_url": URL + "/"}), model)


def test_tgi_registered_under_mlflow_name_and_alias() -> None:
    assert get_adapter_class("huggingface-text-generation-inference") is TGIAdapter
    assert get_adapter_class("TGI") is TGIAdapter
    assert TGIAdapter.name == "huggingface-text-generation-inference"


def test_tgi_config_needs_an_http_url() -> None:
    with pytest.raises(ValidationError, match="http:// or https://"):
        TGIConfig.model_validate({"hf_server_url": "tgi:8080"})
    with pytest.raises(ValidationError, match="Field required"):
        TGIConfig.model_validate({})


def test_tgi_build_completions_request_maps_parameters() -> None:
    request = _adapter().build_completions_request(
        {"prompt": "Once", "max_tokens": 20, "temperature": 0.7, "top_p": 0.9, "stop": "\n", "seed": 3}
    )
    assert request.url == f"{URL}/generate"
    assert dict(request.headers) == {"Content-Type": "application/json"}
    assert request.body == {
        "inputs": "Once",
        "parameters": {
            "details": True,
            "decoder_input_details": True,
            "max_new_tokens": 20,
            "temperature": 0.7,
            "do_sample": True,
            "top_p": 0.9,
            "seed": 3,
            "stop": ["\n"],
        },
    }


def test_tgi_temperature_zero_is_greedy_and_top_p_one_is_left_out() -> None:
    body = _adapter().build_completions_request({"prompt": ["x"], "temperature": 0, "top_p": 1}).body
    assert body == {
        "inputs": "x",
        "parameters": {"details": True, "decoder_input_details": True, "do_sample": False},
    }


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        ({"prompt": "x", "n": 2}, "n"),
        ({"prompt": ["a", "b"]}, "prompt"),
        ({"prompt": "x", "logprobs": 1}, "logprobs"),
    ],
)
def test_tgi_completions_refusals(payload: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        _adapter().build_completions_request(payload)
    assert caught.value.param == param


def test_tgi_parse_completions_counts_tokens_from_details() -> None:
    body = {
        "generated_text": " upon a time",
        "details": {
            "finish_reason": "eos_token",
            "generated_tokens": 4,
            "seed": None,
            "prefill": [{"id": 1, "text": "Once", "logprob": None}, {"id": 2, "text": "!", "logprob": -1.0}],
            "tokens": [],
        },
    }
    assert _adapter().parse_response(RouteType.COMPLETIONS, body) == {
        "object": "text_completion",
        "model": "llama-3-8b",
        "choices": [{"index": 0, "text": " upon a time", "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 2, "completion_tokens": 4, "total_tokens": 6},
    }
    plain = _adapter().parse_response(RouteType.COMPLETIONS, {"generated_text": "x"})
    assert plain["usage"] == {"prompt_tokens": None, "completion_tokens": None, "total_tokens": None}


def test_tgi_chat_uses_the_messages_api() -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    request = _adapter().build_chat_request({"messages": [{"role": "user", "content": "hi"}], "tools": tools})
    assert request.url == f"{URL}/v1/chat/completions"
    assert request.body == {
        "messages": [{"role": "user", "content": "hi"}],
        "tools": tools,
        "model": "llama-3-8b",
    }
    assert _adapter(None).build_chat_request({"messages": [{"role": "user", "content": "hi"}]}).body == {
        "messages": [{"role": "user", "content": "hi"}]
    }


def test_tgi_chat_tool_call_arguments_become_strings() -> None:
    body = {
        "object": "chat.completion",
        "id": "",
        "created": 1,
        "model": "tgi",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {"id": "0", "type": "function", "function": {"name": "f", "arguments": {"a": 1}}}
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
    }
    result = _adapter().parse_response(RouteType.CHAT, body)
    assert result["choices"][0]["message"]["tool_calls"] == [
        {"id": "0", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}
    ]


def test_tgi_stream_requests() -> None:
    completions = _adapter().build_stream_request(RouteType.COMPLETIONS, {"prompt": "x", "stream": True})
    assert completions.url == f"{URL}/generate_stream"
    assert completions.body == {"inputs": "x", "parameters": {"details": True}}
    chat = _adapter().build_stream_request(
        RouteType.CHAT, {"messages": [{"role": "user", "content": "x"}], "stream": True}
    )
    assert chat.url == f"{URL}/v1/chat/completions"
    assert chat.body["stream"] is True and chat.body["stream_options"] == {"include_usage": True}


def _events(route_type: RouteType, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    adapter, state = _adapter(), {}
    return [
        chunk
        for event in events
        for chunk in adapter.parse_stream_event(route_type, StreamEvent(orjson.dumps(event).decode()), state)
    ]


def test_tgi_generate_stream_events_become_chunks() -> None:
    def token(text: str, special: bool = False) -> dict[str, Any]:
        return {"id": 1, "text": text, "logprob": -0.1, "special": special}

    events = [
        {"index": 1, "token": token(" upon"), "generated_text": None, "details": None},
        {"index": 2, "token": token(" a"), "generated_text": None, "details": None},
        {
            "index": 3,
            "token": token("</s>", special=True),
            "generated_text": " upon a",
            "details": {"finish_reason": "eos_token", "generated_tokens": 3, "input_length": 2, "seed": None},
        },
    ]
    assert _events(RouteType.COMPLETIONS, events) == [
        {
            "object": "text_completion",
            "model": "llama-3-8b",
            "choices": [{"index": 0, "text": " upon", "finish_reason": None}],
        },
        {
            "object": "text_completion",
            "model": "llama-3-8b",
            "choices": [{"index": 0, "text": " a", "finish_reason": None}],
        },
        {
            "object": "text_completion",
            "model": "llama-3-8b",
            "choices": [{"index": 0, "text": "", "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5},
        },
    ]


def test_tgi_stream_error_event_raises_with_its_type() -> None:
    with pytest.raises(UpstreamStatusError) as caught:
        _events(
            RouteType.COMPLETIONS, [{"error": "Request failed during generation", "error_type": "generation"}]
        )
    assert caught.value.status_code == 502 and "Request failed during generation" in caught.value.message
    with pytest.raises(UpstreamStatusError) as caught:
        _events(RouteType.COMPLETIONS, [{"error": "Model is overloaded", "error_type": "overloaded"}])
    assert caught.value.status_code == 429


def test_tgi_chat_stream_events_are_openai_chunks() -> None:
    event = {
        "id": "",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "tgi",
        "system_fingerprint": "2.4.1-native",
        "choices": [
            {
                "index": 0,
                "delta": {"role": "assistant", "content": "Hi"},
                "logprobs": None,
                "finish_reason": None,
            }
        ],
        "usage": None,
    }
    assert _events(RouteType.CHAT, [event]) == [
        {
            "object": "chat.completion.chunk",
            "model": "tgi",
            "choices": event["choices"],
            "id": "",
            "created": 1,
            "system_fingerprint": "2.4.1-native",
        }
    ]


def test_tgi_generation_error_status_is_the_upstreams_fault() -> None:
    adapter = _adapter()
    assert adapter.upstream_error(424, {"error": "boom", "error_type": "generation"}, {}) == (500, "boom")
    assert adapter.upstream_error(422, {"error": "bad", "error_type": "validation"}, {}) == (422, "bad")


def test_tgi_does_not_offer_embeddings() -> None:
    assert RouteType.EMBEDDINGS not in TGIAdapter.route_types
