"""A route overlay: run-time creations and deletions laid over the config file's routes.

The effective route set is always ``overlay.merge(base)``: the file's routes, minus the deleted
names, plus (and overriding) the created ones. The file store keeps its overlay in memory until the
file itself is reloaded; the Redis store reads its overlay from Redis (docs/scale-out.md).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

import orjson

from gateway_server.config import GatewayConfig, RouteConfig, parse_route
from gateway_server.errors import ConfigError

__all__ = ["RouteOverlay", "parse_overlay"]

logger = logging.getLogger("gateway_server.shared")


@dataclass(frozen=True, slots=True)
class RouteOverlay:
    """The run-time changes read from Redis at one version (routes already validated here)."""

    version: int = 0
    created: dict[str, RouteConfig] = field(default_factory=dict)
    deleted: frozenset[str] = frozenset()

    def merge(self, base: GatewayConfig) -> GatewayConfig:
        """The file's routes minus the deleted names, with the created ones added (and winning)."""
        if not self.created and not self.deleted:
            return base
        hidden = self.deleted | self.created.keys()
        routes = [route for route in base.routes if route.name not in hidden]
        routes.extend(self.created[name] for name in sorted(self.created))
        return base.model_copy(update={"routes": routes})  # keeps the file's path and warnings


def parse_overlay(
    version: int, created: dict[str, bytes], deleted: Iterable[str], base: GatewayConfig | None = None
) -> RouteOverlay:
    """Validate each created route as a run-time route of ``base`` (the config file: its
    credentials and upstream hosts, ``trust.py``); one that fails is skipped."""
    routes: dict[str, RouteConfig] = {}
    for name, raw in created.items():
        try:
            routes[name] = parse_route(orjson.loads(raw), source=f"shared route '{name}'", base=base)
        except (ConfigError, orjson.JSONDecodeError) as exc:
            # Most often a credential this process's file does not declare: the others may serve it.
            logger.error("shared route '%s' is not served by this process:\n%s", name, exc)
    return RouteOverlay(version, routes, frozenset(deleted))
