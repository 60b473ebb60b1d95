"""The provider table: static names, each module imported only when a config names its provider."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
import textwrap

import pytest

import gateway_server.config
import gateway_server.providers
from gateway_server.breaker import BreakerBoard, upstream_key
from gateway_server.providers import _WHERE, PROVIDERS, get_adapter_class, normalize_provider_name
from gateway_server.providers.base import Adapter
from gateway_server.providers.catalog import CATALOG, ProviderSpec
from gateway_server.reliability import build_plan

# Provider modules hold a ``<Vendor>Adapter``; these hold shared code only.
NOT_PROVIDERS = {"base", "streaming", "catalog"}  # and the _private helpers


@pytest.mark.parametrize("key", sorted(_WHERE))
def test_provider_table_entry_names_its_adapter(key: str) -> None:
    adapter = PROVIDERS[key]
    assert isinstance(adapter, type) and issubclass(adapter, Adapter)
    assert normalize_provider_name(adapter.name) == key, f"{_WHERE[key]} is named {adapter.name!r}"


def test_provider_table_lists_every_provider_module() -> None:
    modules = {
        info.name
        for info in pkgutil.iter_modules(gateway_server.providers.__path__)
        if not info.name.startswith("_") and info.name not in NOT_PROVIDERS
    }
    registered = {where.partition(":")[0] for where in _WHERE.values()}
    assert modules == registered


def test_provider_table_aliases_resolve_to_the_same_class() -> None:
    assert get_adapter_class("Amazon-Bedrock") is get_adapter_class("bedrock") is not None
    assert get_adapter_class("tgi") is PROVIDERS["huggingface_text_generation_inference"]
    assert get_adapter_class("no-such-provider") is None


def _run(code: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60, check=True
    )
    return result.stdout.split()


def test_config_loads_only_the_providers_it_names() -> None:
    code = """
        import sys
        from gateway_server.config import parse_config
        from gateway_server.registry import RouteIndex

        config = parse_config('''
        routes:
          - {name: a, route_type: llm/v1/chat, model: {provider: fake}}
          - name: b
            route_type: llm/v1/chat
            model: {provider: openai, name: gpt-4o-mini, config: {openai_api_key: sk-x}}
            fallbacks: [{provider: fake}]
        ''')
        RouteIndex(config.routes)  # every route's adapters are built
        print(*sorted(m for m in sys.modules if m.startswith(('gateway_server.providers.', 'botocore'))))
    """
    loaded = set(_run(code))
    assert {"gateway_server.providers.fake", "gateway_server.providers.openai"} <= loaded
    for absent in ("bedrock", "_aws", "gemini", "anthropic", "cohere", "mistral", "openai_compatible"):
        assert f"gateway_server.providers.{absent}" not in loaded
    assert not any(name.startswith("botocore") for name in loaded)


def test_unknown_provider_is_suggested_without_importing_providers() -> None:
    code = """
        import sys
        from gateway_server.config import parse_config
        from gateway_server.errors import ConfigError

        try:
            parse_config('routes:\\n  - {name: a, route_type: llm/v1/chat, model: {provider: gemeni}}\\n', 'x.yaml')
        except ConfigError as exc:
            print(str(exc).replace(' ', '_'))
        print(*sorted(m for m in sys.modules if m.startswith('gateway_server.providers.')))
    """
    message, *loaded = _run(code)
    assert "did_you_mean_'gemini'?" in message
    assert loaded == [
        "gateway_server.providers.base",
        "gateway_server.providers.catalog",  # the table: names and facts, no provider module
        "gateway_server.providers.streaming",
    ]


# ---------------------------------------------------------------- the provider table (catalog.py)


@pytest.mark.parametrize("spec", CATALOG, ids=lambda spec: spec.key)
def test_each_row_is_what_its_adapter_serves(spec: ProviderSpec) -> None:
    adapter = PROVIDERS[spec.key]
    assert adapter.spec is spec
    assert (adapter.name, adapter.route_types, adapter.streaming_route_types) == (
        spec.name,
        spec.route_types,
        spec.streaming_route_types,
    )
    assert adapter.config_model.__name__ == spec.config_model
    assert getattr(gateway_server.config, spec.config_model) is adapter.config_model
    if spec.fake is not None:
        module, _, name = spec.fake.partition(":")
        assert hasattr(importlib.import_module(f"gateway_server.testing.{module}"), name)


@pytest.mark.parametrize("spec", [s for s in CATALOG if s.sample], ids=lambda spec: spec.key)
def test_each_adapter_knows_its_exact_origin(spec: ProviderSpec) -> None:
    """The circuit breaker key's origin is the adapter's own, from the URL it calls."""
    model = spec.sample_for(base="http://LocalHost:8099/v2", url="http://localhost:8099")
    config = gateway_server.config.parse_config(f"routes:\n  - {{name: r, route_type: llm/v1/chat, model: {model}}}\n")
    adapter = build_plan(config.routes[0], BreakerBoard()).primaries[0].adapter
    expected = "in-process://fake" if spec.key == "fake" else "http://localhost:8099"
    assert adapter.origin == expected
    assert upstream_key(adapter).split(" ")[1] == expected
