"""The route table: name -> a ready-to-serve entry, behind a small interface.

Everything a request needs that can be computed from the config is computed here, once, when a
route is added: the reliability plan (adapters with their URLs and headers, retry policy, deadline,
breakers), the rate limit, the public views.
The table is replaced as a whole on reload (one assignment, atomic for readers), so a request
keeps the entry it started with.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from gateway_server.breaker import BreakerBoard
from gateway_server.config import GatewayConfig, RouteConfig
from gateway_server.errors import RouteExistsError, RouteNotFoundError
from gateway_server.limits import RouteLimit
from gateway_server.providers import Adapter
from gateway_server.reliability import DEFAULT_TIMEOUT_SECONDS, Plan, build_plan
from gateway_server.routes import RouteType
from gateway_server.secrets import Secret

__all__ = ["DEFAULT_TIMEOUT_SECONDS", "InMemoryRegistry", "RouteEntry", "RouteRegistry", "build_entry"]


@dataclass(frozen=True, slots=True)
class RouteEntry:
    name: str
    route_type: RouteType
    config: RouteConfig
    adapter: Adapter  # the first primary model's (listings, a stream's default model name)
    public: dict[str, Any]
    endpoint: dict[str, Any]
    secrets: tuple[Secret, ...]
    plan: Plan  # every model's adapter, retry policy, deadline, breakers (reliability.py)
    limit: RouteLimit | None = None  # the route's rate limit, counted by state.limiter (limits.py)


def build_entry(route: RouteConfig, breakers: BreakerBoard | None = None) -> RouteEntry:
    plan = build_plan(route, breakers if breakers is not None else BreakerBoard())
    public_route = route.to_route()
    limit = None
    if route.limit is not None:
        limit = RouteLimit.build(route.name, route.limit.calls, route.limit.period_seconds, route.limit.key)
    return RouteEntry(
        name=route.name,
        route_type=route.route_type,
        config=route,
        adapter=plan.primaries[0].adapter,
        public=public_route.model_dump(mode="json", exclude_none=True),
        endpoint=public_route.to_endpoint(),
        secrets=route.secrets(),
        plan=plan,
        limit=limit,
    )


class RouteRegistry(Protocol):
    """What the server needs from a route table (in memory now; Redis-backed later)."""

    def get(self, name: str) -> RouteEntry | None: ...

    def list(self) -> list[RouteEntry]: ...

    def add(self, route: RouteConfig) -> RouteEntry: ...

    def remove(self, name: str) -> None: ...

    def replace(self, config: GatewayConfig) -> None: ...


class InMemoryRegistry:
    def __init__(self, routes: Iterable[RouteConfig] = (), *, breakers: BreakerBoard | None = None) -> None:
        # One breaker per upstream model, kept across add/replace so a reload keeps what it learnt.
        self.breakers = breakers if breakers is not None else BreakerBoard()
        self._entries: dict[str, RouteEntry] = {route.name: self._build(route) for route in routes}

    def _build(self, route: RouteConfig) -> RouteEntry:
        return build_entry(route, self.breakers)

    def get(self, name: str) -> RouteEntry | None:
        return self._entries.get(name)

    def list(self) -> list[RouteEntry]:
        return list(self._entries.values())

    def add(self, route: RouteConfig) -> RouteEntry:
        if route.name in self._entries:
            raise RouteExistsError(route.name)
        entry = self._build(route)
        self._entries = {**self._entries, route.name: entry}
        return entry

    def remove(self, name: str) -> None:
        if name not in self._entries:
            raise RouteNotFoundError(name)
        self._entries = {key: value for key, value in self._entries.items() if key != name}

    def replace(self, config: GatewayConfig) -> None:
        self._entries = {route.name: self._build(route) for route in config.routes}
