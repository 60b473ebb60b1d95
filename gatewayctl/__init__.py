"""gatewayctl: the Python client and CLI of an MLflow-AI-Gateway-compatible LLM gateway.

The library API is the seed ``mlflow.gateway`` API (client class, URI functions, fluent route and
query functions, ``Route``/``RouteType``) plus an async client and typed errors::

    import gatewayctl

    gatewayctl.set_gateway_uri("http://127.0.0.1:5000")
    answer = gatewayctl.query("chat", {"messages": [{"role": "user", "content": "Hi"}]})

Every error raised on purpose is a :class:`GatewayError`; see ``gateway_server.errors`` for the tree.
Importing this package never imports the server's web stack (fastapi, uvicorn).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from gateway_server.errors import (
    AuthenticationError,
    BudgetExceededError,
    CircuitOpenError,
    ClientRequestError,
    ConfigError,
    ConfigNotPersistableError,
    GatewayError,
    GatewayTimeoutError,
    GatewayUnreachableError,
    GatewayUriError,
    InvalidRequestError,
    ListenError,
    MethodNotAllowedError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    ResponseNotFoundError,
    RouteExistsError,
    RouteNotFoundError,
    SecretNotFoundError,
    SharedStateUnavailableError,
    UnsupportedRouteTypeError,
    UpstreamConnectionError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamStatusError,
    UpstreamTimeoutError,
)
from gateway_server.routes import Route, RouteType
from gatewayctl._uri import get_gateway_uri, set_gateway_uri
from gatewayctl._version import __version__

if TYPE_CHECKING:
    from gatewayctl.client import AsyncGatewayClient, GatewayClient, MlflowGatewayClient, PagedList
    from gatewayctl.fluent import create_route, delete_route, get_route, query, search_routes

# The client and the fluent functions import httpx (~70 ms with the rich, click and pygments its
# CLI pulls in); they load on first use, so that `gatewayctl serve`, which runs through this
# package, does not pay for them.
_LAZY = {
    "AsyncGatewayClient": "gatewayctl.client",
    "GatewayClient": "gatewayctl.client",
    "MlflowGatewayClient": "gatewayctl.client",
    "PagedList": "gatewayctl.client",
    "create_route": "gatewayctl.fluent",
    "delete_route": "gatewayctl.fluent",
    "get_route": "gatewayctl.fluent",
    "query": "gatewayctl.fluent",
    "search_routes": "gatewayctl.fluent",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "AsyncGatewayClient",
    "AuthenticationError",
    "BudgetExceededError",
    "CircuitOpenError",
    "ClientRequestError",
    "ConfigError",
    "ConfigNotPersistableError",
    "GatewayClient",
    "GatewayError",
    "GatewayTimeoutError",
    "GatewayUnreachableError",
    "GatewayUriError",
    "InvalidRequestError",
    "ListenError",
    "MethodNotAllowedError",
    "MlflowGatewayClient",
    "PagedList",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "RateLimitError",
    "ResponseNotFoundError",
    "Route",
    "RouteExistsError",
    "RouteNotFoundError",
    "RouteType",
    "SecretNotFoundError",
    "SharedStateUnavailableError",
    "UnsupportedRouteTypeError",
    "UpstreamConnectionError",
    "UpstreamError",
    "UpstreamProtocolError",
    "UpstreamStatusError",
    "UpstreamTimeoutError",
    "__version__",
    "create_route",
    "delete_route",
    "get_gateway_uri",
    "get_route",
    "query",
    "search_routes",
    "set_gateway_uri",
]
