"""The openai adapter + the network module against the fake OpenAI server on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from upstream_calls import call as _call

from gateway_server.errors import (
    UpstreamConnectionError,
    UpstreamProtocolError,
    UpstreamStatusError,
    UpstreamTimeoutError,
)
from gateway_server.providers.openai import OpenAIAdapter, OpenAIConfig
from gateway_server.routes import RouteType
from gateway_server.testing import FakeOpenAI, Fault, free_port

pytestmark = pytest.mark.contract

KEY = "sk-contract-key"
CHAT = {"messages": [{"role": "user", "content": "hello upstream"}], "temperature": 0.5}


@pytest.fixture
def openai_adapter(fake_openai: FakeOpenAI) -> Callable[..., OpenAIAdapter]:
    def make(**config: Any) -> OpenAIAdapter:
        settings = {"openai_api_key": KEY, "openai_api_base": fake_openai.api_base, **config}
        return OpenAIAdapter(OpenAIConfig.model_validate(settings), "gpt-4o-mini")

    return make


def test_openai_chat_request_reaches_upstream_exactly(fake_openai: FakeOpenAI, openai_adapter) -> None:
    result = _call(openai_adapter(openai_organization="org-7"), RouteType.CHAT, dict(CHAT))
    request = fake_openai.last_request
    assert (request.method, request.path, request.query_string) == ("POST", "/v1/chat/completions", "")
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["openai-organization"] == "org-7"
    assert request.headers["content-type"] == "application/json"
    assert request.json == {**CHAT, "model": "gpt-4o-mini"}
    assert result["object"] == "chat.completion"
    assert result["choices"][0]["message"]["role"] == "assistant"
    assert "hello upstream" in result["choices"][0]["message"]["content"]
    assert (
        result["usage"]["total_tokens"]
        == result["usage"]["prompt_tokens"] + result["usage"]["completion_tokens"]
    )


def test_openai_completions_and_embeddings(fake_openai: FakeOpenAI, openai_adapter) -> None:
    completion = _call(openai_adapter(), RouteType.COMPLETIONS, {"prompt": "once upon", "max_tokens": 5})
    assert fake_openai.last_request.path == "/v1/completions"
    assert fake_openai.last_request.json == {"prompt": "once upon", "max_tokens": 5, "model": "gpt-4o-mini"}
    assert completion["object"] == "text_completion" and isinstance(completion["choices"][0]["text"], str)
    embedding = _call(openai_adapter(), RouteType.EMBEDDINGS, {"input": ["a", "b"]})
    assert fake_openai.last_request.path == "/v1/embeddings"
    assert [item["index"] for item in embedding["data"]] == [0, 1]
    assert len(embedding["data"][0]["embedding"]) == fake_openai.embedding_dimensions


@pytest.mark.parametrize(("api_type", "auth_header"), [("azure", "api-key"), ("azuread", "authorization")])
def test_openai_azure_types_reach_the_deployment_url(
    fake_openai: FakeOpenAI, api_type: str, auth_header: str
) -> None:
    config = OpenAIConfig.model_validate(
        {
            "openai_api_key": KEY,
            "openai_api_type": api_type,
            "openai_api_base": fake_openai.url,
            "openai_deployment_name": "prod-4o",
            "openai_api_version": "2024-06-01",
        }
    )
    _call(OpenAIAdapter(config, "gpt-4o"), RouteType.CHAT, dict(CHAT))
    request = fake_openai.last_request
    assert request.path == "/openai/deployments/prod-4o/chat/completions"
    assert request.query_string == "api-version=2024-06-01"
    expected = KEY if api_type == "azure" else f"Bearer {KEY}"
    assert request.headers[auth_header] == expected
    assert "model" not in request.json


@pytest.mark.parametrize(
    ("status", "gateway_status"), [(400, 400), (401, 502), (403, 502), (404, 404), (500, 502), (503, 502)]
)
def test_openai_upstream_status_maps(
    fake_openai: FakeOpenAI, openai_adapter, status: int, gateway_status: int
) -> None:
    fake_openai.inject(Fault.error(status, body={"error": {"message": f"upstream says {status}"}}))
    with pytest.raises(UpstreamStatusError) as caught:
        _call(openai_adapter(), RouteType.CHAT, dict(CHAT))
    assert caught.value.status_code == gateway_status
    assert caught.value.upstream_status == status
    assert f"upstream says {status}" in caught.value.message


def test_openai_rate_limit_keeps_retry_after(fake_openai: FakeOpenAI, openai_adapter) -> None:
    fake_openai.inject(Fault.rate_limited(retry_after=7))
    with pytest.raises(UpstreamStatusError) as caught:
        _call(openai_adapter(), RouteType.CHAT, dict(CHAT))
    assert caught.value.status_code == 429 and caught.value.retry_after == 7
    assert caught.value.headers() == {"Retry-After": "7"}


def test_openai_wrong_key_is_502_with_reason_and_no_key(fake_openai: FakeOpenAI, openai_adapter) -> None:
    fake_openai.api_key = "sk-the-right-one"
    with pytest.raises(UpstreamStatusError) as caught:
        _call(openai_adapter(), RouteType.CHAT, dict(CHAT))
    assert caught.value.status_code == 502 and caught.value.upstream_status == 401
    assert "Incorrect API key" in caught.value.message
    assert KEY not in caught.value.message


def test_openai_timeout_is_504(fake_openai: FakeOpenAI, openai_adapter) -> None:
    fake_openai.inject(Fault.slow(2))
    with pytest.raises(UpstreamTimeoutError, match=r"did not answer within 0\.3 s"):
        _call(openai_adapter(), RouteType.CHAT, dict(CHAT), timeout=0.3)


def test_openai_non_json_is_protocol_error(fake_openai: FakeOpenAI, openai_adapter) -> None:
    fake_openai.inject(Fault.not_json())
    with pytest.raises(UpstreamProtocolError, match="content type 'text/html"):
        _call(openai_adapter(), RouteType.CHAT, dict(CHAT))


def test_openai_dropped_connection_is_connection_error(fake_openai: FakeOpenAI, openai_adapter) -> None:
    fake_openai.inject(Fault.disconnect())
    with pytest.raises(UpstreamConnectionError):
        _call(openai_adapter(), RouteType.CHAT, dict(CHAT))


def test_openai_connection_refused_is_connection_error() -> None:
    port = free_port()
    adapter = OpenAIAdapter(
        OpenAIConfig.model_validate(
            {"openai_api_key": KEY, "openai_api_base": f"http://127.0.0.1:{port}/v1"}
        ),
        "m",
    )
    with pytest.raises(UpstreamConnectionError, match=f"could not connect to openai at 127.0.0.1:{port}"):
        _call(adapter, RouteType.CHAT, dict(CHAT))
