"""The provider table: one declarative record per provider, the single source of its facts.

Each :class:`ProviderSpec` holds what the rest of the project needs to know about a provider
without importing its module: the name MLflow spells and the other spellings it accepts, the
display name, where its adapter and config model live, the route types it serves and streams,
its default base URL and the config field that overrides it, how it authenticates, its own error
statuses and how the gateway reads them, and, for the tests, its fake upstream and a route's
``model:`` block aimed at that fake.

The table drives:

- the registry (``providers/__init__.py``: name -> adapter, aliases), which imports a provider's
  module only when a config names it;
- the adapter classes themselves: ``class AnthropicAdapter(Adapter, provider="anthropic")`` takes
  its name, display name, route types, streaming route types and error statuses from its row
  (``Adapter.__init_subclass__``), so they are written once;
- the docs test (one row of docs/providers.md per provider, with the right route types);
- the streaming conformance test (every provider that streams chat, against its fake).

Adding a provider is one module (config model + adapter), one row here, one fake in
``gateway_server/testing/``, one sample config.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from gateway_server.routes import RouteType

__all__ = ["CATALOG", "ProviderSpec", "spec_of"]

_ALL = frozenset(RouteType)
_GENERATING = frozenset({RouteType.CHAT, RouteType.COMPLETIONS})
_CHAT = frozenset({RouteType.CHAT})


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    key: str  # normalised name: lower case, "_" for "-"
    name: str  # as MLflow spells it (route listings)
    display_name: str
    adapter: str  # "module:Class" in gateway_server.providers
    config_model: str  # the config class's name (gateway_server.config.<Name> finds it)
    route_types: frozenset[RouteType]
    streaming_route_types: frozenset[RouteType]
    default_base: str | None  # None: no default, the config must give one
    base_field: str | None  # the config field that overrides the base URL
    auth: str  # how the gateway's key reaches the upstream
    # The provider's own HTTP statuses, as the gateway's status table should read them.
    error_statuses: Mapping[int, int] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()  # other normalised spellings MLflow accepts
    fake: str | None = None  # "module:Class" in gateway_server.testing
    # A route's model block aimed at a served fake: {base} is its api_base, {url} its root URL.
    sample: str | None = None

    def sample_for(self, *, base: str = "", url: str = "") -> str:
        """:attr:`sample` aimed at a fake served at ``url`` (``base``: its api_base)."""
        assert self.sample is not None
        return self.sample.replace("{base}", base).replace("{url}", url)


def _compatible(
    key: str,
    display_name: str,
    base: str,
    route_types: frozenset[RouteType],
    *,
    auth: str = "bearer api_key (optional)",
    config: str = "OpenAICompatibleConfig",
    model: str = "served-model",
) -> ProviderSpec:
    return ProviderSpec(
        key=key,
        name=key,
        display_name=display_name,
        adapter=f"openai_compatible:{key.capitalize()}Adapter",
        config_model=config,
        route_types=route_types,
        streaming_route_types=route_types & _GENERATING,
        default_base=base,
        base_field="api_base",
        auth=auth,
        fake="fake_openai_compatible:FakeOpenAICompatible",
        sample=f"{{provider: {key}, name: {model}, config: {{api_key: k, api_base: '{{base}}'}}}}",
    )


_HOSTED = "bearer api_key (required)"

CATALOG: tuple[ProviderSpec, ...] = (
    ProviderSpec(
        key="openai",
        name="openai",
        display_name="OpenAI",
        adapter="openai:OpenAIAdapter",
        config_model="OpenAIConfig",
        route_types=_ALL,
        streaming_route_types=_GENERATING,
        default_base="https://api.openai.com/v1",
        base_field="openai_api_base",
        auth="bearer openai_api_key; api-key header for azure",
        fake="fake_openai:FakeOpenAI",
        sample="{provider: openai, name: gpt-4o-mini, config: {openai_api_key: k, openai_api_base: '{base}'}}",
    ),
    ProviderSpec(
        key="fake",
        name="fake",
        display_name="Fake (offline)",
        adapter="fake:FakeAdapter",
        config_model="FakeConfig",
        route_types=_ALL,
        streaming_route_types=_GENERATING,
        default_base="in-process://fake/v1",
        base_field=None,
        auth="none",
        sample="{provider: fake, name: fake-model}",
    ),
    ProviderSpec(
        key="bedrock",
        name="bedrock",
        display_name="Amazon Bedrock",
        adapter="bedrock:BedrockAdapter",
        config_model="BedrockConfig",
        route_types=_ALL,
        streaming_route_types=_GENERATING,
        default_base="https://bedrock-runtime.{aws_region}.amazonaws.com",
        base_field="aws_config.endpoint_url",
        auth="AWS SigV4 (static keys, default chain, role) or bearer aws_bearer_token",
        aliases=("amazon_bedrock",),
        fake="fake_bedrock:FakeBedrock",
        sample=(
            "{provider: bedrock, name: amazon.nova-lite-v1:0, config: {aws_config: {aws_region: us-east-1, "
            "aws_access_key_id: AKIDEXAMPLE, aws_secret_access_key: secret, endpoint_url: '{url}'}}}"
        ),
    ),
    ProviderSpec(
        key="huggingface_text_generation_inference",
        name="huggingface-text-generation-inference",
        display_name="Hugging Face Text Generation Inference",
        adapter="huggingface_text_generation_inference:TGIAdapter",
        config_model="HuggingFaceTextGenerationInferenceConfig",
        route_types=_GENERATING,
        streaming_route_types=_GENERATING,
        default_base=None,
        base_field="hf_server_url",
        auth="none",
        aliases=("tgi",),
        fake="fake_tgi:FakeTGI",
        sample="{provider: tgi, name: tgi, config: {hf_server_url: '{url}'}}",
    ),
    ProviderSpec(
        key="mlflow_model_serving",
        name="mlflow-model-serving",
        display_name="MLflow Model Serving",
        adapter="mlflow_model_serving:MlflowModelServingAdapter",
        config_model="MlflowModelServingConfig",
        route_types=_ALL,
        streaming_route_types=frozenset(),
        default_base=None,
        base_field="model_server_url",
        auth="none",
        fake="fake_mlflow_serving:FakeMlflowServing",
        sample="{provider: mlflow-model-serving, name: m, config: {model_server_url: '{url}'}}",
    ),
    _compatible("vllm", "vLLM", "http://localhost:8000/v1", _ALL, model="meta-llama/Llama-3.1-8B-Instruct"),
    _compatible("ollama", "Ollama", "http://localhost:11434/v1", _ALL, auth="bearer api_key (default 'ollama')"),
    _compatible("llamacpp", "llama.cpp server", "http://localhost:8080/v1", _ALL),
    _compatible("lmstudio", "LM Studio", "http://localhost:1234/v1", _ALL),
    _compatible(
        "togetherai", "Together AI", "https://api.together.xyz/v1", _ALL, auth=_HOSTED, config="TogetherAIConfig"
    ),
    _compatible("groq", "Groq", "https://api.groq.com/openai/v1", _CHAT, auth=_HOSTED, config="HostedOpenAICompatibleConfig"),
    _compatible("deepseek", "DeepSeek", "https://api.deepseek.com/v1", _CHAT, auth=_HOSTED, config="HostedOpenAICompatibleConfig"),
    _compatible("xai", "xAI", "https://api.x.ai/v1", _CHAT, auth=_HOSTED, config="HostedOpenAICompatibleConfig"),
    _compatible(
        "openrouter", "OpenRouter", "https://openrouter.ai/api/v1", _GENERATING, auth=_HOSTED, config="HostedOpenAICompatibleConfig"
    ),
    ProviderSpec(
        key="anthropic",
        name="anthropic",
        display_name="Anthropic",
        adapter="anthropic:AnthropicAdapter",
        config_model="AnthropicConfig",
        route_types=_GENERATING,
        streaming_route_types=_GENERATING,
        default_base="https://api.anthropic.com/v1",
        base_field="anthropic_api_base",
        auth="x-api-key anthropic_api_key",
        error_statuses={529: 503},  # 529 "overloaded": the upstream is unavailable
        fake="fake_anthropic:FakeAnthropic",
        sample="{provider: anthropic, name: claude-sonnet-4-5, config: {anthropic_api_key: k, anthropic_api_base: '{base}'}}",
    ),
    ProviderSpec(
        key="cohere",
        name="cohere",
        display_name="Cohere",
        adapter="cohere:CohereAdapter",
        config_model="CohereConfig",
        route_types=_ALL,
        streaming_route_types=_GENERATING,
        default_base="https://api.cohere.com/v2",
        base_field="cohere_api_base",
        auth="bearer cohere_api_key",
        # 498 is Cohere's "invalid token" (the gateway's key: a 401); 499 "client closed" is not the
        # caller's doing.
        error_statuses={498: 401, 499: 503},
        fake="fake_cohere:FakeCohere",
        sample="{provider: cohere, name: command-r, config: {cohere_api_key: k, cohere_api_base: '{base}'}}",
    ),
    ProviderSpec(
        key="mistral",
        name="mistral",
        display_name="Mistral AI",
        adapter="mistral:MistralAdapter",
        config_model="MistralConfig",
        route_types=_ALL,
        streaming_route_types=_GENERATING,
        default_base="https://api.mistral.ai/v1",
        base_field="mistral_api_base",
        auth="bearer mistral_api_key",
        fake="fake_mistral:FakeMistral",
        sample="{provider: mistral, name: mistral-small, config: {mistral_api_key: k, mistral_api_base: '{base}'}}",
    ),
    ProviderSpec(
        key="gemini",
        name="gemini",
        display_name="Google Gemini",
        adapter="gemini:GeminiAdapter",
        config_model="GeminiConfig",
        route_types=_ALL,
        streaming_route_types=_GENERATING,
        default_base="https://generativelanguage.googleapis.com/v1beta/models",
        base_field="gemini_api_base",
        auth="x-goog-api-key gemini_api_key",
        fake="fake_gemini:FakeGemini",
        sample="{provider: gemini, name: gemini-2.0-flash, config: {gemini_api_key: k, gemini_api_base: '{base}'}}",
    ),
)

_BY_KEY = {spec.key: spec for spec in CATALOG}


def spec_of(key: str) -> ProviderSpec:
    """The row of normalised provider name ``key``."""
    return _BY_KEY[key]
