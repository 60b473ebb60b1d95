"""Servers that speak OpenAI's API: one adapter, one preset per provider name.

vLLM, Ollama, llama.cpp, LM Studio, Together AI, Groq, DeepSeek, xAI and OpenRouter all answer
OpenAI's ``/chat/completions`` (and most ``/completions`` and ``/embeddings``) with OpenAI's shapes,
so :class:`OpenAICompatibleAdapter` is the OpenAI adapter with another base URL and key: every
transform (requests, answers, stream events) is :class:`~gateway_server.providers.openai.OpenAIAdapter`'s.
A preset is a tiny subclass naming the provider, its default base URL, its default key and the
route types the service offers.

Config (MLflow 3.18's names): ``api_key`` (a masked secret; optional for local servers, required for
hosted services; Together AI also takes MLflow's ``togetherai_api_key``) and ``api_base``, which
replaces the preset's base URL (e.g. a vLLM on another host).
"""

from __future__ import annotations

import types
from typing import ClassVar

from pydantic import field_validator, model_validator

from gateway_server.providers._translate import base_url
from gateway_server.providers.base import ProviderConfig
from gateway_server.providers.catalog import spec_of
from gateway_server.providers.openai import OpenAIWire, OpenAIWireAdapter
from gateway_server.secrets import Secret

__all__ = [
    "OPENAI_COMPATIBLE_PRESETS",
    "HostedOpenAICompatibleConfig",
    "OpenAICompatibleAdapter",
    "OpenAICompatibleConfig",
    "TogetherAIConfig",
]



class OpenAICompatibleConfig(ProviderConfig):
    """A local server's config: the key is optional."""

    api_key: Secret | None = None
    api_base: str | None = None

    @field_validator("api_base")
    @classmethod
    def _check_base(cls, value: str | None) -> str | None:
        return base_url(value) if value is not None else None

    def key(self) -> str | None:
        return self.api_key.get() if self.api_key is not None else None


class HostedOpenAICompatibleConfig(OpenAICompatibleConfig):
    """A hosted service's config: the key is required."""

    @model_validator(mode="after")
    def _needs_key(self) -> HostedOpenAICompatibleConfig:
        if self.api_key is None:
            raise ValueError("api_key is required for this hosted service (e.g. api_key: $PROVIDER_API_KEY)")
        return self


class TogetherAIConfig(OpenAICompatibleConfig):
    """Together AI: ``api_key``, or MLflow's ``togetherai_api_key``; exactly one."""

    togetherai_api_key: Secret | None = None

    @model_validator(mode="after")
    def _one_key(self) -> TogetherAIConfig:
        if (self.api_key is None) == (self.togetherai_api_key is None):
            raise ValueError("give exactly one of api_key or togetherai_api_key (MLflow's name)")
        return self

    def key(self) -> str | None:
        key = self.togetherai_api_key or self.api_key
        return key.get() if key is not None else None


class OpenAICompatibleAdapter(OpenAIWireAdapter):
    """OpenAI's transforms against another server; subclasses are the presets."""

    config_model: ClassVar[type[ProviderConfig]] = OpenAICompatibleConfig
    default_api_base: ClassVar[str]
    default_api_key: ClassVar[str | None] = None
    config: OpenAICompatibleConfig

    def openai_wire(self) -> OpenAIWire:
        config = self.config
        key = config.key() or self.default_api_key
        return OpenAIWire.at(config.api_base or self.default_api_base, {"Authorization": f"Bearer {key}"} if key else {})


def _preset(
    key: str, config: type[OpenAICompatibleConfig] = OpenAICompatibleConfig, api_key: str | None = None
) -> type[OpenAICompatibleAdapter]:
    """The preset of provider-table row ``key``: its name, route types and default base come from
    the row (``providers/catalog.py``)."""
    spec = spec_of(key)
    assert spec.default_base is not None
    attributes = {
        "default_api_base": spec.default_base,
        "default_api_key": api_key,
        "config_model": config,
        "__doc__": f"{spec.display_name} (OpenAI-compatible; default base {spec.default_base}).",
        "__module__": __name__,
    }
    class_name = key.capitalize() + "Adapter"
    return types.new_class(
        class_name, (OpenAICompatibleAdapter,), {"provider": key}, lambda ns: ns.update(attributes)
    )


_HOSTED = HostedOpenAICompatibleConfig

# Route types per service (in the provider table) are what its OpenAI-compatible API documents:
# chat-only services answer 501 for completions and embeddings instead of forwarding to an endpoint
# that does not exist. Module attributes, so that the registry can name each one.
VllmAdapter = _preset("vllm")
OllamaAdapter = _preset("ollama", api_key="ollama")
LlamacppAdapter = _preset("llamacpp")
LmstudioAdapter = _preset("lmstudio")
TogetheraiAdapter = _preset("togetherai", TogetherAIConfig)
GroqAdapter = _preset("groq", _HOSTED)
DeepseekAdapter = _preset("deepseek", _HOSTED)
XaiAdapter = _preset("xai", _HOSTED)
OpenrouterAdapter = _preset("openrouter", _HOSTED)

OPENAI_COMPATIBLE_PRESETS: tuple[type[OpenAICompatibleAdapter], ...] = (
    VllmAdapter,
    OllamaAdapter,
    LlamacppAdapter,
    LmstudioAdapter,
    TogetheraiAdapter,
    GroqAdapter,
    DeepseekAdapter,
    XaiAdapter,
    OpenrouterAdapter,
)
