"""OpenAI / Azure / Azure AD: the exact upstream requests and the parsed answers (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from gateway_server.errors import UpstreamProtocolError
from gateway_server.providers.openai import OpenAIAdapter, OpenAIConfig
from gateway_server.routes import RouteType


def _adapter(**config) -> OpenAIAdapter:
    return OpenAIAdapter(OpenAIConfig.model_validate({"openai_api_key": "sk-test", **config}), "gpt-4o-mini")


def test_openai_build_chat_request_injects_model_and_bearer() -> None:
    request = _adapter(openai_organization="org-1").build_chat_request(
        {"messages": [{"role": "user", "content": "hi"}], "temperature": 0.2, "max_tokens": None}
    )
    assert request.url == "https://api.openai.com/v1/chat/completions"
    assert dict(request.headers) == {
        "Authorization": "Bearer sk-test",
        "OpenAI-Organization": "org-1",
        "Content-Type": "application/json",
    }
    assert request.body == {
        "messages": [{"role": "user", "content": "hi"}],
        "temperature": 0.2,
        "model": "gpt-4o-mini",
    }


def test_openai_api_version_adds_query() -> None:
    request = _adapter(
        openai_api_base="http://h/v1/", openai_api_version="2024-01-01"
    ).build_embeddings_request({"input": "x"})
    assert request.url == "http://h/v1/embeddings?api-version=2024-01-01"


def test_openai_azure_uses_deployment_url_and_api_key_header() -> None:
    adapter = _adapter(
        openai_api_type="azure",
        openai_api_base="https://res.openai.azure.com",
        openai_deployment_name="dep 1",
        openai_api_version="2024-06-01",
    )
    request = adapter.build_completions_request({"prompt": "p", "model": "caller-model"})
    assert (
        request.url
        == "https://res.openai.azure.com/openai/deployments/dep%201/completions?api-version=2024-06-01"
    )
    assert dict(request.headers) == {"api-key": "sk-test", "Content-Type": "application/json"}
    assert request.body == {"prompt": "p"}  # Azure: the deployment names the model


def test_openai_azuread_uses_bearer() -> None:
    adapter = _adapter(
        openai_api_type="AZUREAD",
        openai_api_base="https://res.openai.azure.com",
        openai_deployment_name="d",
        openai_api_version="v",
    )
    request = adapter.build_chat_request({"messages": []})
    assert request.headers["Authorization"] == "Bearer sk-test"
    assert "api-key" not in request.headers


def test_openai_parse_chat_keeps_documented_fields_and_tool_calls() -> None:
    tool_calls = [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "gpt-4o-mini-2024",
        "system_fingerprint": "fp",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": None, "tool_calls": tool_calls},
                "finish_reason": "tool_calls",
                "logprobs": None,
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12},
    }
    assert _adapter().parse_response(RouteType.CHAT, body) == {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "gpt-4o-mini-2024",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": None, "tool_calls": tool_calls},
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12},
    }


def test_openai_parse_embeddings() -> None:
    body = {
        "object": "list",
        "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}],
        "model": "text-embedding-3-small",
        "usage": {"prompt_tokens": 3, "total_tokens": 3},
    }
    assert _adapter().parse_response(RouteType.EMBEDDINGS, body) == body


def test_openai_parse_wrong_shape_is_a_protocol_error() -> None:
    with pytest.raises(UpstreamProtocolError, match="does not have the documented shape"):
        _adapter().parse_response(RouteType.CHAT, {"choices": [{"text": "no message"}]})
    with pytest.raises(UpstreamProtocolError, match="expected an object"):
        _adapter().parse_response(RouteType.CHAT, [1, 2])


def test_openai_error_reason_is_the_providers_message() -> None:
    body = {"error": {"message": "You exceeded your quota", "type": "insufficient_quota"}}
    assert _adapter().error_reason(429, body) == "You exceeded your quota"
    assert _adapter().error_reason(500, "upstream exploded") == "upstream exploded"


def _stream(adapter: OpenAIAdapter, body: bytes, payload: dict[str, Any]) -> list[dict[str, Any]]:
    decoder, state = adapter.stream_decoder(), {"payload": payload}
    events = decoder.feed(body) + decoder.close()
    return [chunk for event in events for chunk in adapter.parse_stream_event(RouteType.CHAT, event, state)]


_FINISH = b'data: {"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
_USAGE = (
    b'data: {"id":"c","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}\n\n'
)


def test_stream_usage_folds_into_the_final_chunk_unless_the_caller_asked() -> None:
    adapter = _adapter()
    plain = _stream(adapter, _FINISH + _USAGE + b"data: [DONE]\n\n", {})
    assert [(c["choices"][0]["finish_reason"], c["usage"]["total_tokens"]) for c in plain] == [("stop", 3)]
    asked = _stream(
        adapter, _FINISH + _USAGE + b"data: [DONE]\n\n", {"stream_options": {"include_usage": True}}
    )
    assert [c["choices"] for c in asked][1] == [] and asked[1]["usage"]["total_tokens"] == 3


def test_stream_held_final_chunk_is_released_without_usage_or_done() -> None:
    adapter = _adapter()
    chunks = _stream(adapter, _FINISH, {})  # an OpenAI-compatible server: no usage, no [DONE]
    assert [c["choices"][0]["finish_reason"] for c in chunks] == ["stop"]
    alone = _stream(adapter, _USAGE + b"data: [DONE]\n\n", {})  # usage with no finishing chunk before it
    assert alone[0]["choices"] == [{"index": 0, "delta": {}, "finish_reason": None}]
