"""The provider registry: an explicit table from a provider's config name to its adapter class.

Provider names are matched case-insensitively, with ``-`` and ``_`` equivalent (MLflow's rule), so
``Amazon-Bedrock`` and ``amazon_bedrock`` name the same provider. A new provider is one module
with a ``<Vendor>Config`` and a ``<Vendor>Adapter``, and one line here.
"""

from __future__ import annotations

from gateway_server.providers.anthropic import AnthropicAdapter
from gateway_server.providers.base import Adapter, ProviderConfig, UpstreamRequest
from gateway_server.providers.bedrock import BedrockAdapter
from gateway_server.providers.cohere import CohereAdapter
from gateway_server.providers.fake import FakeAdapter
from gateway_server.providers.gemini import GeminiAdapter
from gateway_server.providers.huggingface_text_generation_inference import TGIAdapter
from gateway_server.providers.mistral import MistralAdapter
from gateway_server.providers.mlflow_model_serving import MlflowModelServingAdapter
from gateway_server.providers.openai import OpenAIAdapter
from gateway_server.providers.openai_compatible import OPENAI_COMPATIBLE_PRESETS

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


# Keyed by the normalised name; ``Adapter.name`` keeps MLflow's spelling for route listings.
PROVIDERS: dict[str, type[Adapter]] = {
    normalize_provider_name(adapter.name): adapter
    for adapter in (
        OpenAIAdapter,
        FakeAdapter,
        BedrockAdapter,
        TGIAdapter,
        MlflowModelServingAdapter,
        *OPENAI_COMPATIBLE_PRESETS,
        AnthropicAdapter,
        CohereAdapter,
        MistralAdapter,
        GeminiAdapter,
    )
}

# Other spellings MLflow accepts for the same provider (normalised).
ALIASES: dict[str, str] = {
    "amazon_bedrock": "bedrock",
    "tgi": "huggingface_text_generation_inference",
}


def get_adapter_class(name: str) -> type[Adapter] | None:
    key = normalize_provider_name(name)
    key = ALIASES.get(key, key)
    return PROVIDERS.get(key)
