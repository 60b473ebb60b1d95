"""The seam of upstream I/O: the ``UpstreamTransport`` protocol and the named transports.

:class:`~gateway_server.upstream.client.UpstreamClient` turns an adapter's pure
``UpstreamRequest`` into bytes and the answer back into a result or a classified error; *how* the
bytes travel is a transport's job. Three implement the protocol:

- ``pool`` (:mod:`~gateway_server.upstream.pool`): our pooled HTTP/1.1 client, the default: the
  fastest (docs/performance.md), on purpose without proxies from the environment or HTTP/2;
- ``httpx`` (:mod:`~gateway_server.upstream.httpx_transport`): httpx's client, for deployments
  that need what the pool lacks (``HTTPS_PROXY`` and the other proxy variables, ``SSL_CERT_FILE``),
  at a higher CPU cost per request; chosen per route (``transport: httpx``) or server-wide
  (``server.upstream_transport: httpx``);
- ``in-process`` (:mod:`~gateway_server.upstream.in_process`): ASGI apps called inside the process,
  no socket: the ``fake`` provider's upstream, and tests that want no sockets.

A transport's whole contract: ``request`` (one whole exchange), ``send`` (the head; the body is
read from the returned response, which is then released) and ``close``. Header names come back in
lower case. Failures are raised as ``TimeoutError``, :class:`ConnectError` (no connection),
:class:`ConnectionBroken` (the connection broke before a complete answer) and
:class:`UnsendableRequest`; the client maps them to the error tree.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Protocol

from gateway_server.upstream.pool import ConnectError, ConnectionBroken, Headers, UnsendableRequest

__all__ = [
    "IN_PROCESS",
    "TRANSPORTS",
    "ConnectError",
    "ConnectionBroken",
    "Headers",
    "StreamedResponse",
    "UnsendableRequest",
    "UpstreamTransport",
    "transport_for",
]

# The names a config may give (``transport:`` on a route, ``server.upstream_transport``).
TRANSPORTS = ("pool", "httpx")
IN_PROCESS = "in-process"  # chosen by the adapter (the fake provider), never by a config


class StreamedResponse(Protocol):
    """An answer whose head has arrived; the body is read with ``read`` or ``iter_chunks``."""

    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    async def read(self) -> bytes: ...

    def iter_chunks(self, read_timeout: float | None = None) -> AsyncIterator[bytes]: ...

    def release(self) -> None: ...


class UpstreamTransport(Protocol):
    async def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | None,
        timeout: float | None = None,
    ) -> tuple[int, Mapping[str, str], bytes]: ...

    async def send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | None,
        timeout: float | None = None,
    ) -> StreamedResponse: ...

    async def close(self) -> None: ...


def transport_for(origin: str, configured: str | None) -> str | None:
    """The transport a model's calls take: in-process for an in-process origin (the ``fake``
    provider), else the route's ``transport:`` (``None``: the server's default)."""
    return IN_PROCESS if origin.startswith("in-process://") else configured
