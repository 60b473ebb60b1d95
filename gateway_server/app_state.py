"""What a running gateway holds: the route table, the upstream client and the server settings."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from gateway_server.auth import KeyTable
from gateway_server.config import GatewayConfig
from gateway_server.limits import RateLimiter
from gateway_server.limits_redis import RedisWindows
from gateway_server.metrics import Metrics
from gateway_server.registry import InMemoryRegistry, RouteRegistry
from gateway_server.shared import SharedState
from gateway_server.upstream.client import UpstreamClient

__all__ = ["GatewayState"]


@dataclass(slots=True)
class GatewayState:
    config: GatewayConfig
    registry: RouteRegistry
    max_request_bytes: int
    auth: KeyTable = field(default_factory=KeyTable)  # who may query and who may change routes
    admin_lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one route change at a time
    upstream: UpstreamClient | None = None  # set by the app's lifespan (the pooled session)
    metrics: Metrics = field(default_factory=Metrics)
    # Per-process counts unless shared_state is set (the runner refuses workers>1 then).
    limiter: RateLimiter = field(default_factory=RateLimiter)
    # server.shared_state: Redis for counters and run-time routes (shared.py); read once at start.
    shared: SharedState | None = None
    extras: dict[str, object] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: GatewayConfig) -> GatewayState:
        url = config.server.shared_state
        shared = SharedState(url) if url else None
        return cls(
            config=config,
            registry=InMemoryRegistry(config.routes),
            max_request_bytes=config.server.max_request_bytes,
            auth=KeyTable.from_config(config.auth),
            limiter=RateLimiter(RedisWindows(shared) if shared is not None else None),
            shared=shared,
        )
