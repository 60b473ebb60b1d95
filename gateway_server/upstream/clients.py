"""The upstream clients of one serving process, by transport: built by the app's lifespan.

One :class:`~gateway_server.upstream.client.UpstreamClient` per transport in use: the pool (always;
the default), the in-process transport (the ``fake`` provider), and httpx, created on the first
call of a route that names it, so a gateway that never uses httpx never imports it.
"""

from __future__ import annotations

from gateway_server.upstream.client import UpstreamClient
from gateway_server.upstream.in_process import InProcessTransport
from gateway_server.upstream.transport import IN_PROCESS, UpstreamTransport

__all__ = ["Upstreams"]


class Upstreams:
    """``client(name)``: the client of transport ``name`` (``None``: the server's default)."""

    __slots__ = ("_clients", "_default", "_owned")

    def __init__(self, pool: UpstreamTransport, *, default: str = "pool") -> None:
        self._default = default
        self._clients: dict[str | None, UpstreamClient] = {
            "pool": UpstreamClient(pool),
            IN_PROCESS: UpstreamClient(InProcessTransport()),
        }
        self._owned: list[UpstreamTransport] = []  # created here, closed here
        if default in self._clients:
            self._clients[None] = self._clients[default]

    def client(self, name: str | None) -> UpstreamClient:
        client = self._clients.get(name)
        if client is None:
            client = self._clients[name] = self._create(name or self._default)
        return client

    def _create(self, name: str) -> UpstreamClient:
        if name in self._clients:
            return self._clients[name]
        if name != "httpx":
            raise ValueError(f"unknown upstream transport {name!r}")
        from gateway_server.upstream.httpx_transport import HttpxTransport

        transport = HttpxTransport()
        self._owned.append(transport)
        client = self._clients[name] = UpstreamClient(transport)
        return client

    async def close(self) -> None:
        """Close the transports created here (the pool belongs to whoever created it)."""
        owned, self._owned = self._owned, []
        for transport in owned:
            await transport.close()
