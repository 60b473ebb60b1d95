"""OpenAI-compatible presets + the network module against fake OpenAI-compatible servers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from upstream_calls import call, stream

from gateway_server.errors import UpstreamStatusError, UpstreamTimeoutError
from gateway_server.providers import get_adapter_class
from gateway_server.providers.openai_compatible import OpenAICompatibleAdapter
from gateway_server.routes import RouteType
from gateway_server.testing import Fault
from gateway_server.testing.fake_openai_compatible import FakeOpenAICompatible

pytestmark = pytest.mark.contract

CHAT = {"messages": [{"role": "user", "content": "hello server"}]}


@pytest.fixture(scope="module")
def fake_vllm_server() -> Iterator[FakeOpenAICompatible]:
    with FakeOpenAICompatible(errors="vllm").serve() as fake:
        yield fake


@pytest.fixture
def fake_vllm(fake_vllm_server: FakeOpenAICompatible) -> Iterator[FakeOpenAICompatible]:
    fake_vllm_server.reset()
    yield fake_vllm_server
    fake_vllm_server.reset()


def _adapter(provider: str, **config: Any) -> OpenAICompatibleAdapter:
    cls = get_adapter_class(provider)
    assert cls is not None and issubclass(cls, OpenAICompatibleAdapter)
    return cls(cls.config_model.model_validate(config), "served-model")


def test_vllm_without_key_reaches_the_server(fake_vllm: FakeOpenAICompatible) -> None:
    result = call(_adapter("vllm", api_base=fake_vllm.api_base), RouteType.CHAT, dict(CHAT))
    request = fake_vllm.last_request
    assert request.path == "/v1/chat/completions" and "authorization" not in request.headers
    assert request.json == {**CHAT, "model": "served-model"}
    assert result["choices"][0]["message"]["content"] == "hello server"
    embeddings = call(_adapter("vllm", api_base=fake_vllm.api_base), RouteType.EMBEDDINGS, {"input": ["a"]})
    assert fake_vllm.last_request.path == "/v1/embeddings" and len(embeddings["data"]) == 1


def test_vllm_error_envelope_is_read(fake_vllm: FakeOpenAICompatible) -> None:
    fake_vllm.inject(Fault.error(400))
    with pytest.raises(UpstreamStatusError) as caught:
        call(_adapter("vllm", api_base=fake_vllm.api_base), RouteType.CHAT, dict(CHAT))
    assert caught.value.status_code == 400 and "Injected fault: status 400" in caught.value.message


@pytest.mark.parametrize(
    ("provider", "prefix", "config"),
    [
        ("groq", "/openai/v1", {"api_key": "gsk-test"}),
        ("openrouter", "/api/v1", {"api_key": "or-test"}),
        ("togetherai", "/v1", {"togetherai_api_key": "tg-test"}),
        ("ollama", "/v1", {}),
    ],
)
def test_hosted_presets_send_their_key(provider: str, prefix: str, config: dict[str, Any]) -> None:
    key = config.get("api_key") or config.get("togetherai_api_key") or "ollama"
    with FakeOpenAICompatible(prefix=prefix, api_key=key).serve() as fake:
        result = call(_adapter(provider, api_base=fake.api_base, **config), RouteType.CHAT, dict(CHAT))
        assert fake.last_request.path == f"{prefix}/chat/completions"
        assert fake.last_request.headers["authorization"] == f"Bearer {key}"
    assert result["object"] == "chat.completion"


def test_wrong_key_is_502(fake_vllm: FakeOpenAICompatible) -> None:
    fake_vllm.api_key = "the-right-one"
    try:
        with pytest.raises(UpstreamStatusError) as caught:
            call(_adapter("vllm", api_base=fake_vllm.api_base, api_key="wrong"), RouteType.CHAT, dict(CHAT))
    finally:
        fake_vllm.api_key = None
    assert (caught.value.upstream_status, caught.value.status_code) == (401, 502)
    assert "wrong" not in caught.value.message


@pytest.mark.parametrize(("status", "gateway_status"), [(403, 502), (404, 404), (500, 502), (503, 502)])
def test_status_maps(fake_vllm: FakeOpenAICompatible, status: int, gateway_status: int) -> None:
    fake_vllm.inject(Fault.error(status))
    with pytest.raises(UpstreamStatusError) as caught:
        call(_adapter("llamacpp", api_base=fake_vllm.api_base), RouteType.CHAT, dict(CHAT))
    assert caught.value.status_code == gateway_status


def test_rate_limit_and_timeout(fake_vllm: FakeOpenAICompatible) -> None:
    fake_vllm.inject(Fault.rate_limited(retry_after=5))
    with pytest.raises(UpstreamStatusError) as caught:
        call(_adapter("lmstudio", api_base=fake_vllm.api_base), RouteType.CHAT, dict(CHAT))
    assert (caught.value.status_code, caught.value.retry_after) == (429, 5)
    fake_vllm.inject(Fault.slow(2))
    with pytest.raises(UpstreamTimeoutError):
        call(_adapter("lmstudio", api_base=fake_vllm.api_base), RouteType.CHAT, dict(CHAT), timeout=0.3)


def test_streams_are_openais(fake_vllm: FakeOpenAICompatible) -> None:
    chunks = stream(_adapter("vllm", api_base=fake_vllm.api_base), RouteType.CHAT, {**CHAT, "stream": True})
    text = "".join(choice["delta"].get("content") or "" for chunk in chunks for choice in chunk["choices"])
    assert text == "hello server"
    assert chunks[-1]["usage"]["total_tokens"] == 4
    completions = stream(
        _adapter("vllm", api_base=fake_vllm.api_base),
        RouteType.COMPLETIONS,
        {"prompt": "x y", "stream": True},
    )
    assert "".join(choice["text"] for chunk in completions for choice in chunk["choices"]) == "x y"
