"""gateway_server: the gateway's server, config and providers.

``import gateway_server`` stays light: the web stack is imported only when ``create_app`` is used.
"""

from __future__ import annotations

from typing import Any

__all__ = ["GatewayConfig", "RouteType", "create_app", "load_config"]


def __getattr__(name: str) -> Any:
    if name in ("GatewayConfig", "load_config"):
        from gateway_server import config

        return getattr(config, name)
    if name == "RouteType":
        from gateway_server.routes import RouteType

        return RouteType
    if name == "create_app":
        from gateway_server.app import create_app

        return create_app
    raise AttributeError(f"module 'gateway_server' has no attribute {name!r}")
