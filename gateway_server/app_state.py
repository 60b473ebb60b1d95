"""What a running gateway holds: the route table, the upstream client and the server settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gateway_server.auth import KeyTable
from gateway_server.config import GatewayConfig
from gateway_server.governor import Governor
from gateway_server.limits import RateLimiter
from gateway_server.limits_redis import RedisWindows
from gateway_server.logs import AccessLog
from gateway_server.metrics import Metrics
from gateway_server.registry import RouteIndex
from gateway_server.runtime import FileStore, RouteStore, RouteTable
from gateway_server.runtime.redis_store import RedisStore
from gateway_server.shared import SharedState
from gateway_server.upstream.clients import Upstreams
from gateway_server.usage_store import EmbeddedStore, default_store_path

if TYPE_CHECKING:
    from gateway_server.tracing import Tracer

__all__ = ["GatewayState"]


@dataclass(slots=True)
class GatewayState:
    # The live route set and everything swapped with it (config, index, keys, body cap). Only the
    # table changes them; the read-only properties below are views for the request handlers.
    routes: RouteTable
    upstream: Upstreams | None = None  # set by the app's lifespan: one client per upstream transport
    metrics: Metrics = field(default_factory=Metrics)
    # Per-process counts unless shared_state is set (the runner refuses workers>1 then).
    limiter: RateLimiter = field(default_factory=RateLimiter)
    # server.shared_state: Redis for counters and run-time routes; read once at start.
    shared: SharedState | None = None
    # Token limits, budgets and usage (governor.py): set by from_config; None for a bare state.
    governor: Governor | None = None
    extras: dict[str, object] = field(default_factory=dict)
    access_log: AccessLog | None = None  # one line per invocation (logs.py); set by the runner
    tracer: Tracer | None = None  # OpenTelemetry, when configured (tracing.py)

    @classmethod
    def from_config(cls, config: GatewayConfig) -> GatewayState:
        """The state for ``config``: the store of run-time route changes is chosen here, once."""
        url = config.server.shared_state
        shared = SharedState(url) if url else None
        store: RouteStore = RedisStore(shared) if shared is not None else FileStore(config.path)
        limiter = RateLimiter(RedisWindows(shared) if shared is not None else None)
        usage: Any  # where token windows, budget spend and usage live (docs/governance.md)
        if shared is not None:
            from gateway_server.usage_redis import RedisUsageStore

            usage = RedisUsageStore(shared)
        else:
            usage = EmbeddedStore(default_store_path(config.path, config.server.usage_store))
        routes = RouteTable(config, store)
        metrics = Metrics()
        routes.on_swap.append(metrics.retain)  # a deleted route's series go with it
        return cls(
            routes=routes,
            metrics=metrics,
            limiter=limiter,
            shared=shared,
            governor=Governor(usage, limiter, config.auth),
        )

    @property
    def config(self) -> GatewayConfig:
        """The effective config: the file's, with the run-time route changes over it."""
        return self.routes.config

    @property
    def registry(self) -> RouteIndex:
        return self.routes.index

    @property
    def auth(self) -> KeyTable:
        return self.routes.auth

    @property
    def max_request_bytes(self) -> int:
        return self.routes.max_request_bytes
