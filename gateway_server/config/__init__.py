"""The YAML config: routes (or MLflow 2.9+ ``endpoints``), optional ``auth:`` and ``server:``.

Two modules, one job each:

- :mod:`gateway_server.config.models`: the pydantic models (what a valid config is);
- :mod:`gateway_server.config.loader`: reading YAML and reporting every problem with its file,
  line, route and field (``load_config``, ``parse_config``, ``parse_route``).

This package re-exports every public name of both, plus the seed's names (``Provider``,
``Route``, ``RouteType``, ``ModelInfo``) and, as in MLflow, each provider's config class
(``gateway_server.config.OpenAIConfig``), looked up on use.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from gateway_server.config.loader import load_config, parse_config, parse_route
from gateway_server.config.models import (
    QUERY_SUFFIX,
    ROUTE_BASE,
    AuthConfig,
    AuthKeyConfig,
    BudgetConfig,
    GatewayConfig,
    LimitConfig,
    Model,
    OtelConfig,
    PriceConfig,
    RetryConfig,
    RouteConfig,
    ServerConfig,
    WeightedModel,
)
from gateway_server.providers import PROVIDERS
from gateway_server.routes import ModelInfo, Route, RouteType

__all__ = [
    "QUERY_SUFFIX",
    "ROUTE_BASE",
    "AuthConfig",
    "AuthKeyConfig",
    "BudgetConfig",
    "GatewayConfig",
    "LimitConfig",
    "Model",
    "ModelInfo",
    "OpenAIAPIType",
    "OpenAIConfig",
    "OtelConfig",
    "PriceConfig",
    "Provider",
    "RetryConfig",
    "Route",
    "RouteConfig",
    "RouteType",
    "ServerConfig",
    "WeightedModel",
    "load_config",
    "parse_config",
    "parse_route",
]

# The seed's ``Provider`` enum, built from the registry so it never goes stale.
Provider = Enum("Provider", {name.upper(): name for name in PROVIDERS}, type=str)  # type: ignore[misc]


def __getattr__(name: str) -> Any:
    """Provider config classes are importable from here, as in MLflow (``config.AnthropicConfig``).

    Looked up on use, so that loading a config imports only the providers it names."""
    if name == "OpenAIAPIType":
        from gateway_server.providers.openai import OpenAIAPIType

        return OpenAIAPIType
    if name.endswith("Config"):  # not for the import system's probes (``__path__``, ...)
        for adapter in PROVIDERS.values():
            if adapter.config_model.__name__ == name:
                return adapter.config_model
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
