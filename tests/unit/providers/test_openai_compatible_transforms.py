"""OpenAI-compatible presets: base URLs, keys and route types; the transforms are OpenAI's (pure)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from gateway_server.providers import get_adapter_class
from gateway_server.providers.openai import OpenAIAdapter, OpenAIWireAdapter
from gateway_server.providers.openai_compatible import OPENAI_COMPATIBLE_PRESETS, OpenAICompatibleAdapter
from gateway_server.routes import RouteType

CHAT = {"messages": [{"role": "user", "content": "hi"}], "temperature": 0.1}


def _adapter(provider: str, **config: Any) -> OpenAICompatibleAdapter:
    cls = get_adapter_class(provider)
    assert cls is not None and issubclass(cls, OpenAICompatibleAdapter)
    return cls(cls.config_model.model_validate(config), "some-model")


@pytest.mark.parametrize(
    ("provider", "config", "url", "authorization"),
    [
        ("vllm", {}, "http://localhost:8000/v1/chat/completions", None),
        ("ollama", {}, "http://localhost:11434/v1/chat/completions", "Bearer ollama"),
        ("llamacpp", {}, "http://localhost:8080/v1/chat/completions", None),
        ("lmstudio", {}, "http://localhost:1234/v1/chat/completions", None),
        (
            "togetherai",
            {"togetherai_api_key": "tg"},
            "https://api.together.xyz/v1/chat/completions",
            "Bearer tg",
        ),
        ("togetherai", {"api_key": "tg2"}, "https://api.together.xyz/v1/chat/completions", "Bearer tg2"),
        ("groq", {"api_key": "gsk"}, "https://api.groq.com/openai/v1/chat/completions", "Bearer gsk"),
        ("deepseek", {"api_key": "ds"}, "https://api.deepseek.com/v1/chat/completions", "Bearer ds"),
        ("xai", {"api_key": "xk"}, "https://api.x.ai/v1/chat/completions", "Bearer xk"),
        ("openrouter", {"api_key": "or"}, "https://openrouter.ai/api/v1/chat/completions", "Bearer or"),
        (
            "vllm",
            {"api_key": "token", "api_base": "http://gpu-box:9000/v1/"},
            "http://gpu-box:9000/v1/chat/completions",
            "Bearer token",
        ),
        ("Ollama", {"api_key": "mine"}, "http://localhost:11434/v1/chat/completions", "Bearer mine"),
    ],
)
def test_openai_compatible_presets_build_openai_requests(
    provider: str, config: dict[str, Any], url: str, authorization: str | None
) -> None:
    request = _adapter(provider, **config).build_chat_request(dict(CHAT))
    assert request.url == url
    expected_headers = {"Content-Type": "application/json"}
    if authorization:
        expected_headers = {"Authorization": authorization, **expected_headers}
    assert dict(request.headers) == expected_headers
    assert request.body == {**CHAT, "model": "some-model"}


def test_openai_compatible_presets_share_openais_transforms() -> None:
    for preset in OPENAI_COMPATIBLE_PRESETS:
        assert issubclass(preset, OpenAIWireAdapter)  # OpenAIAdapter's base: the OpenAI wire format
        for method in ("parse_chat_response", "parse_stream_event", "build_stream_request", "_request"):
            assert getattr(preset, method) is getattr(OpenAIAdapter, method), (preset.name, method)


def test_openai_compatible_route_types_per_service() -> None:
    route_types = {preset.name: preset.route_types for preset in OPENAI_COMPATIBLE_PRESETS}
    assert route_types["vllm"] == frozenset(RouteType)
    assert route_types["groq"] == frozenset({RouteType.CHAT})
    assert route_types["openrouter"] == frozenset({RouteType.CHAT, RouteType.COMPLETIONS})
    for preset in OPENAI_COMPATIBLE_PRESETS:
        assert preset.streaming_route_types == preset.route_types - {RouteType.EMBEDDINGS}


def test_openai_compatible_completions_embeddings_and_streams() -> None:
    adapter = _adapter("vllm")
    assert adapter.build_completions_request({"prompt": "p"}).url == "http://localhost:8000/v1/completions"
    assert adapter.build_embeddings_request({"input": "p"}).body == {"input": "p", "model": "some-model"}
    stream = adapter.build_stream_request(RouteType.CHAT, {**CHAT, "stream": True})
    assert stream.body["stream"] is True and stream.body["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize(
    ("provider", "config", "message"),
    [
        ("groq", {}, "api_key is required"),
        ("togetherai", {}, "exactly one of api_key or togetherai_api_key"),
        ("togetherai", {"api_key": "a", "togetherai_api_key": "b"}, "exactly one"),
        ("vllm", {"api_base": "localhost:8000"}, "http:// or https://"),
        ("ollama", {"ollama_api_key": "x"}, "Extra inputs are not permitted"),
    ],
)
def test_openai_compatible_config_errors(provider: str, config: dict[str, Any], message: str) -> None:
    cls = get_adapter_class(provider)
    assert cls is not None
    with pytest.raises(ValidationError, match=message):
        cls.config_model.model_validate(config)


def test_openai_compatible_keys_are_secrets() -> None:
    cls = get_adapter_class("groq")
    assert cls is not None
    config = cls.config_model.model_validate({"api_key": "gsk-very-secret"})
    assert "gsk-very-secret" not in repr(config)
    assert [secret.get() for secret in config.secrets()] == ["gsk-very-secret"]
