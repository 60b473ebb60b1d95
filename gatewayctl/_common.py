"""What the client and the CLI share without importing httpx: defaults and the client-side errors
(defined with the rest of the tree in ``gateway_server.errors``, re-exported here).

``gatewayctl serve`` runs through the CLI, so every module it imports is start-up time of the
server; httpx (and the rich, click and pygments its own CLI pulls in) is ~70 ms of it. The client
re-exports these names (``gatewayctl.client.GatewayUnreachableError`` is the same class).
"""

from __future__ import annotations

from gateway_server.errors import GatewayTimeoutError, GatewayUnreachableError

__all__ = ["API_KEY_ENV", "DEFAULT_TIMEOUT", "GatewayTimeoutError", "GatewayUnreachableError"]

API_KEY_ENV = "GATEWAYCTL_API_KEY"
DEFAULT_TIMEOUT = 120.0
"""Seconds to wait for an answer (per read); MLflow's deployments client waits 120 s too."""
