"""The provider registry: an explicit table from a provider's config name to its adapter class.

Provider names are matched case-insensitively, with ``-`` and ``_`` equivalent (MLflow's rule), so
``Amazon-Bedrock`` and ``amazon_bedrock`` name the same provider. A new provider is one module
with a ``<Vendor>Config`` and a ``<Vendor>Adapter``, and one line in ``_WHERE`` below.

The table names each adapter as ``"module:Class"`` and imports a provider's module the first time
the provider is looked up, so a process serving a config that names only ``openai`` never imports
the Bedrock, Gemini or other modules (nor builds their pydantic config models): that is start-up
time and memory. The names themselves are static, so unknown-provider errors still suggest among
every provider without importing any.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, MutableMapping

from gateway_server.providers.base import Adapter, ProviderConfig, UpstreamRequest

__all__ = [
    "PROVIDERS",
    "Adapter",
    "ProviderConfig",
    "UpstreamRequest",
    "get_adapter_class",
    "normalize_provider_name",
]


def normalize_provider_name(name: str) -> str:
    return name.strip().lower().replace("-", "_")


# Normalised provider name -> "module:Class" in this package. ``Adapter.name`` keeps MLflow's
# spelling for route listings; tests/unit/test_providers_registry.py checks the two agree.
_WHERE: dict[str, str] = {
    "openai": "openai:OpenAIAdapter",
    "fake": "fake:FakeAdapter",
    "bedrock": "bedrock:BedrockAdapter",
    "huggingface_text_generation_inference": "huggingface_text_generation_inference:TGIAdapter",
    "mlflow_model_serving": "mlflow_model_serving:MlflowModelServingAdapter",
    "vllm": "openai_compatible:VllmAdapter",
    "ollama": "openai_compatible:OllamaAdapter",
    "llamacpp": "openai_compatible:LlamacppAdapter",
    "lmstudio": "openai_compatible:LmstudioAdapter",
    "togetherai": "openai_compatible:TogetheraiAdapter",
    "groq": "openai_compatible:GroqAdapter",
    "deepseek": "openai_compatible:DeepseekAdapter",
    "xai": "openai_compatible:XaiAdapter",
    "openrouter": "openai_compatible:OpenrouterAdapter",
    "anthropic": "anthropic:AnthropicAdapter",
    "cohere": "cohere:CohereAdapter",
    "mistral": "mistral:MistralAdapter",
    "gemini": "gemini:GeminiAdapter",
}


class _Registry(MutableMapping[str, type[Adapter]]):
    """A dict of name -> adapter class whose values are imported on first access."""

    def __init__(self, where: dict[str, str]) -> None:
        self._entries: dict[str, type[Adapter] | str] = dict(where)

    def __getitem__(self, key: str) -> type[Adapter]:
        entry = self._entries[key]
        if isinstance(entry, str):
            module, _, attribute = entry.partition(":")
            entry = getattr(importlib.import_module(f"{__name__}.{module}"), attribute)
            self._entries[key] = entry
        return entry

    def __setitem__(self, key: str, value: type[Adapter]) -> None:
        self._entries[key] = value

    def __delitem__(self, key: str) -> None:
        del self._entries[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"PROVIDERS({', '.join(self._entries)})"


# Keyed by the normalised name; iterating the keys imports nothing, reading a value imports its module.
PROVIDERS: MutableMapping[str, type[Adapter]] = _Registry(_WHERE)

# Other spellings MLflow accepts for the same provider (normalised).
ALIASES: dict[str, str] = {
    "amazon_bedrock": "bedrock",
    "tgi": "huggingface_text_generation_inference",
}


def get_adapter_class(name: str) -> type[Adapter] | None:
    key = normalize_provider_name(name)
    key = ALIASES.get(key, key)
    return PROVIDERS.get(key)
