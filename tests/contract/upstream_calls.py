"""Drive an adapter through ``UpstreamClient`` with a real, closed-after-use connection pool."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from gateway_server.providers import Adapter
from gateway_server.routes import RouteType
from gateway_server.testing.fake_upstreams import FakeUpstream
from gateway_server.upstream.client import ConnectionPool, UpstreamClient


async def _with_client(action: Any) -> Any:
    pool = ConnectionPool()
    try:
        return await action(UpstreamClient(pool))
    finally:
        await pool.close()


def call(adapter: Adapter, route_type: RouteType, payload: dict[str, Any], timeout: float = 5) -> Any:
    """``UpstreamClient.call``: the parsed standard response, or the Upstream*Error it raises."""
    return asyncio.run(_with_client(lambda client: client.call(adapter, route_type, payload, timeout)))


def stream(
    adapter: Adapter, route_type: RouteType, payload: dict[str, Any], timeout: float = 5
) -> list[dict[str, Any]]:
    """``UpstreamClient.stream``: every standard chunk, in order (or the error it raises)."""

    async def collect(client: UpstreamClient) -> list[dict[str, Any]]:
        return [chunk async for chunk in client.stream(adapter, route_type, payload, timeout)]

    return asyncio.run(_with_client(collect))


def served_fake(make: Callable[[], FakeUpstream]) -> tuple[Any, Any]:
    """The two fixtures a contract module needs: ``fake_server`` (one fake served on 127.0.0.1 for
    the module) and ``fake`` (that fake, reset before and after each test). Use as
    ``fake_server, fake = served_fake(lambda: FakeX(api_key=KEY))``."""

    @pytest.fixture(scope="module")
    def fake_server() -> Iterator[FakeUpstream]:
        with make().serve() as served:
            yield served

    @pytest.fixture
    def fake(fake_server: FakeUpstream) -> Iterator[FakeUpstream]:
        fake_server.reset()
        yield fake_server
        fake_server.reset()

    return fake_server, fake
