"""The httpx transport: httpx's ``AsyncClient`` behind the ``UpstreamTransport`` protocol.

For deployments that need what the pool does not do: proxies from the environment
(``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY``, ``NO_PROXY``) and the CA bundle of
``SSL_CERT_FILE``/``SSL_CERT_DIR`` (httpx's ``trust_env``). It costs more CPU per request than the
pool (docs/performance.md), so it is opt-in: ``transport: httpx`` on a route, or
``server.upstream_transport: httpx`` for every route. httpx is already a dependency (the client
library and the CLI use it); it is imported only when a route uses this transport.

Like the pool: no redirects followed, no retry of a sent request (that is the route's retry
policy's decision), bodies decoded (gzip, deflate), failures raised as the transport errors.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx

from gateway_server.upstream.transport import ConnectError, ConnectionBroken, Headers, UnsendableRequest

__all__ = ["HttpxTransport"]


def _failure(exc: httpx.HTTPError) -> Exception:
    """httpx's exception as the transport contract's."""
    if isinstance(exc, httpx.TimeoutException):
        return TimeoutError(str(exc) or type(exc).__name__)
    if isinstance(exc, httpx.ConnectError):
        return ConnectError(str(exc) or "connection refused")
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.LocalProtocolError):
        return UnsendableRequest(str(exc))
    return ConnectionBroken(str(exc) or type(exc).__name__)


def _headers(response: httpx.Response) -> Headers:
    return Headers((name.lower(), value) for name, value in response.headers.items())


class HttpxTransport:
    """An :class:`~gateway_server.upstream.transport.UpstreamTransport` over ``httpx.AsyncClient``."""

    def __init__(self, **options: Any) -> None:
        # Timeouts are ours (asyncio.timeout around each step), not httpx's per-phase ones.
        self._client = httpx.AsyncClient(timeout=None, follow_redirects=False, trust_env=True, **options)

    async def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | None,
        timeout: float | None = None,
    ) -> tuple[int, Headers, bytes]:
        try:
            async with asyncio.timeout(timeout):
                response = await self._client.request(method, url, headers=dict(headers), content=body)
        except httpx.HTTPError as exc:
            raise _failure(exc) from exc
        except httpx.InvalidURL as exc:
            raise UnsendableRequest(str(exc)) from exc
        return response.status_code, _headers(response), response.content

    async def send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | None,
        timeout: float | None = None,
    ) -> _Response:
        try:
            request = self._client.build_request(method, url, headers=dict(headers), content=body)
            async with asyncio.timeout(timeout):
                response = await self._client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise _failure(exc) from exc
        except httpx.InvalidURL as exc:
            raise UnsendableRequest(str(exc)) from exc
        return _Response(response)

    async def close(self) -> None:
        await self._client.aclose()


class _Response:
    __slots__ = ("_closing", "_response", "headers", "status")

    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self._closing: asyncio.Task[None] | None = None
        self.status = response.status_code
        self.headers = _headers(response)

    async def read(self) -> bytes:
        try:
            return await self._response.aread()
        except httpx.HTTPError as exc:
            raise _failure(exc) from exc

    async def iter_chunks(self, read_timeout: float | None = None) -> AsyncIterator[bytes]:
        chunks = self._response.aiter_bytes()
        try:
            while True:
                async with asyncio.timeout(read_timeout):
                    chunk = await anext(chunks, None)
                if chunk is None:
                    return
                if chunk:
                    yield chunk
        except httpx.HTTPError as exc:
            raise _failure(exc) from exc

    def release(self) -> None:
        """Close the response (its connection goes back to httpx's pool, or is dropped)."""
        if self._closing is None and not self._response.is_closed:
            self._closing = asyncio.get_running_loop().create_task(self._response.aclose())
