"""What the client and the CLI share without importing httpx: defaults and the client-side errors.

``gatewayctl serve`` runs through the CLI, so every module it imports is start-up time of the
server; httpx (and the rich, click and pygments its own CLI pulls in) is ~70 ms of it. The client
re-exports these names (``gatewayctl.client.GatewayUnreachableError`` is the same class).
"""

from __future__ import annotations

from gateway_server.errors import GatewayError

__all__ = ["API_KEY_ENV", "DEFAULT_TIMEOUT", "GatewayTimeoutError", "GatewayUnreachableError"]

API_KEY_ENV = "GATEWAYCTL_API_KEY"
DEFAULT_TIMEOUT = 120.0
"""Seconds to wait for an answer (per read); MLflow's deployments client waits 120 s too."""


class GatewayUnreachableError(GatewayError):
    """No HTTP answer from the gateway: connection refused, name not resolved, connection dropped."""

    status_code = 503
    error_type = "gateway_unreachable"


class GatewayTimeoutError(GatewayUnreachableError):
    """This client gave up waiting for the gateway (not HTTP 504, which is ``UpstreamTimeoutError``)."""

    status_code = 504
    error_type = "gateway_timeout"
