"""The route table: name -> a ready-to-serve entry, behind a small interface.

Everything a request needs that can be computed from the config is computed here, once, when a
route is added: the adapter (with its URLs and headers), the timeout object, the public views.
The table is replaced as a whole on reload (one assignment, atomic for readers), so a request
keeps the entry it started with.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from gateway_server.config import GatewayConfig, RouteConfig
from gateway_server.errors import RouteExistsError, RouteNotFoundError
from gateway_server.providers import Adapter, get_adapter_class
from gateway_server.routes import RouteType
from gateway_server.secrets import Secret

__all__ = ["DEFAULT_TIMEOUT_SECONDS", "InMemoryRegistry", "RouteEntry", "RouteRegistry", "build_entry"]

# MLflow's route timeout (MLFLOW_GATEWAY_ROUTE_TIMEOUT_SECONDS defaults to 300): LLM calls are long.
DEFAULT_TIMEOUT_SECONDS = 300.0


@dataclass(frozen=True, slots=True)
class RouteEntry:
    name: str
    route_type: RouteType
    config: RouteConfig
    adapter: Adapter
    timeout: aiohttp.ClientTimeout
    public: dict[str, Any]
    endpoint: dict[str, Any]
    secrets: tuple[Secret, ...]


def build_entry(route: RouteConfig) -> RouteEntry:
    model = route.primary_models[0]
    adapter_cls = get_adapter_class(model.provider)
    assert adapter_cls is not None and model.config is not None  # guaranteed by config validation
    public_route = route.to_route()
    seconds = route.timeout or DEFAULT_TIMEOUT_SECONDS
    return RouteEntry(
        name=route.name,
        route_type=route.route_type,
        config=route,
        adapter=adapter_cls(model.config, model.name),
        timeout=aiohttp.ClientTimeout(total=seconds),
        public=public_route.model_dump(mode="json", exclude_none=True),
        endpoint=public_route.to_endpoint(),
        secrets=route.secrets(),
    )


class RouteRegistry(Protocol):
    """What the server needs from a route table (in memory now; Redis-backed later)."""

    def get(self, name: str) -> RouteEntry | None: ...

    def list(self) -> list[RouteEntry]: ...

    def add(self, route: RouteConfig) -> RouteEntry: ...

    def remove(self, name: str) -> None: ...

    def replace(self, config: GatewayConfig) -> None: ...


class InMemoryRegistry:
    def __init__(self, routes: Iterable[RouteConfig] = ()) -> None:
        self._entries: dict[str, RouteEntry] = {route.name: build_entry(route) for route in routes}

    def get(self, name: str) -> RouteEntry | None:
        return self._entries.get(name)

    def list(self) -> list[RouteEntry]:
        return list(self._entries.values())

    def add(self, route: RouteConfig) -> RouteEntry:
        if route.name in self._entries:
            raise RouteExistsError(route.name)
        entry = build_entry(route)
        self._entries = {**self._entries, route.name: entry}
        return entry

    def remove(self, name: str) -> None:
        if name not in self._entries:
            raise RouteNotFoundError(name)
        self._entries = {key: value for key, value in self._entries.items() if key != name}

    def replace(self, config: GatewayConfig) -> None:
        self._entries = {route.name: build_entry(route) for route in config.routes}
