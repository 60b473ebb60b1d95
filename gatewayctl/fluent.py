"""Module-level functions of MLflow's ``mlflow.gateway`` API: each builds a client for the current URI.

The URI is resolved on every call (``set_gateway_uri()``, then ``MLFLOW_GATEWAY_URI``), as in
MLflow, and the admin key for ``create_route``/``delete_route`` comes from ``GATEWAYCTL_API_KEY``.
``search_routes()`` walks every page and returns a plain list.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, overload

from gateway_server.routes import Route, RouteType
from gatewayctl._stream import ChunkStream
from gatewayctl.client import GatewayClient

__all__ = ["create_route", "delete_route", "get_route", "query", "search_routes"]


def get_route(name: str) -> Route:
    """The route called ``name`` on the current gateway."""
    with GatewayClient() as client:
        return client.get_route(name)


def search_routes() -> list[Route]:
    """Every route of the current gateway (all pages)."""
    with GatewayClient() as client:
        return client.list_routes()


@overload
def query(route: str, data: Mapping[str, Any], *, stream: Literal[False] = ...) -> dict[str, Any]: ...


@overload
def query(route: str, data: Mapping[str, Any], *, stream: Literal[True]) -> ChunkStream: ...


def query(route: str, data: Mapping[str, Any], *, stream: bool = False) -> dict[str, Any] | ChunkStream:
    """Query a route of the current gateway; with ``stream=True`` an iterator of chunks.

    A stream owns its client: closing the stream (or reaching its end) closes both.
    """
    client = GatewayClient()
    if not stream:
        with client:
            return client.query(route, data)
    try:
        chunks = client.query(route, data, stream=True)
    except BaseException:
        client.close()
        raise
    chunks.close_with(client)
    return chunks


def create_route(
    name: str | Mapping[str, Any],
    route_type: str | RouteType | None = None,
    model: Mapping[str, Any] | None = None,
) -> Route:
    """Create a route on the current gateway (admin key from ``GATEWAYCTL_API_KEY``); a whole
    route entry as one mapping works too (see ``GatewayClient.create_route``)."""
    with GatewayClient() as client:
        return client.create_route(name, route_type, model)


def delete_route(name: str) -> None:
    """Delete a route from the current gateway (admin key from ``GATEWAYCTL_API_KEY``)."""
    with GatewayClient() as client:
        client.delete_route(name)
