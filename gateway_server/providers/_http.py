"""The only network code of the providers: one pooled aiohttp session, failures classified.

Why aiohttp and not httpx here: on this project's 2-core benchmark machine httpx/httpcore cost
about 9x more CPU per upstream call (SPEC §1). The session is created once by the app's lifespan
and shared by every route; adapters never see it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import aiohttp
import orjson
import yarl

from gateway_server.errors import (
    UpstreamConnectionError,
    UpstreamProtocolError,
    UpstreamStatusError,
    UpstreamTimeoutError,
)
from gateway_server.providers.base import Adapter, UpstreamRequest
from gateway_server.routes import RouteType
from gateway_server.secrets import redact

__all__ = ["UpstreamClient", "create_session", "parse_retry_after"]


def create_session() -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(
        limit=0,  # no global cap: concurrency is bounded by callers, not by a hidden queue
        limit_per_host=0,
        ttl_dns_cache=300,
        keepalive_timeout=30,
        enable_cleanup_closed=False,
    )
    return aiohttp.ClientSession(
        connector=connector,
        auto_decompress=True,
        skip_auto_headers=("User-Agent",),
        json_serialize=lambda obj: orjson.dumps(obj).decode(),
    )


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: rare from LLM APIs; the caller falls back to its own backoff


def _host_of(url: str) -> str:
    try:
        parsed = aiohttp.helpers.URL(url)  # yarl, a dependency of aiohttp
        return f"{parsed.host}:{parsed.port}" if parsed.port else str(parsed.host)
    except ValueError:
        return "the upstream"


class UpstreamClient:
    """Sends an adapter's request and turns every kind of failure into an ``Upstream*Error``."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session

    async def call(
        self, adapter: Adapter, route_type: RouteType, payload: dict[str, Any], timeout: aiohttp.ClientTimeout
    ) -> dict[str, Any]:
        request = adapter.build_request(route_type, payload)
        status, headers, raw = await self._send(adapter, request, timeout)
        content_type = headers.get("Content-Type", "")
        if status >= 300:
            self._raise_status(adapter, status, headers, raw)
        if "json" not in content_type:
            raise UpstreamProtocolError(
                f"{adapter.name} answered with content type '{content_type or 'none'}', expected JSON",
                provider=adapter.name,
                upstream_status=status,
            )
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise UpstreamProtocolError(
                f"{adapter.name} answered with invalid JSON ({exc})",
                provider=adapter.name,
                upstream_status=status,
            ) from exc
        return adapter.parse_response(route_type, body)

    async def stream(
        self, adapter: Adapter, route_type: RouteType, payload: dict[str, Any], timeout: aiohttp.ClientTimeout
    ) -> AsyncIterator[dict[str, Any]]:
        """Standard chunks one by one (see :meth:`stream_batches`)."""
        async with aclosing(self.stream_batches(adapter, route_type, payload, timeout)) as batches:
            async for batch in batches:
                for chunk in batch:
                    yield chunk

    async def stream_batches(
        self, adapter: Adapter, route_type: RouteType, payload: dict[str, Any], timeout: aiohttp.ClientTimeout
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Standard chunks as the upstream sends them, grouped by upstream read: whatever one read
        brought is forwarded together (one write to the client instead of one per event, and no
        waiting for more). Nothing is yielded before the upstream has answered 2xx, so a failure
        before the first event raises like a normal call. ``timeout`` bounds the connection and
        each wait for the next bytes, not the stream's whole length."""
        request = adapter.build_stream_request(route_type, payload)
        stream_timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=timeout.total, sock_read=timeout.total
        )
        decoder = adapter.stream_decoder()
        parse = adapter.parse_stream_event
        state: dict[str, Any] = {}
        try:
            async with self.session.request(
                request.method,
                _target(request),
                data=_encode(request),
                headers=request.headers,
                timeout=stream_timeout,
            ) as response:
                if response.status >= 300:
                    raw = await response.read()
                    self._raise_status(adapter, response.status, response.headers, raw)
                async for data in response.content.iter_any():
                    batch = [
                        chunk for event in decoder.feed(data) for chunk in parse(route_type, event, state)
                    ]
                    if batch:
                        yield batch
                batch = [chunk for event in decoder.close() for chunk in parse(route_type, event, state)]
                if batch:
                    yield batch
        except aiohttp.ClientError as exc:
            raise self._transport_error(adapter, request, exc, stream_timeout) from exc
        except TimeoutError as exc:
            raise UpstreamTimeoutError(
                f"{adapter.name} stopped sending for more than {timeout.total:g} s", provider=adapter.name
            ) from exc

    def _raise_status(self, adapter: Adapter, status: int, headers: Any, raw: bytes) -> None:
        body = _decode_error_body(raw, headers.get("Content-Type", ""))
        upstream_status, reason = adapter.upstream_error(status, body, headers)
        raise UpstreamStatusError(
            provider=adapter.name,
            upstream_status=upstream_status,
            reason=redact(reason, adapter.secrets()),
            retry_after=parse_retry_after(headers.get("Retry-After")),
        )

    async def _send(
        self, adapter: Adapter, request: UpstreamRequest, timeout: aiohttp.ClientTimeout
    ) -> tuple[int, Any, bytes]:
        try:
            async with self.session.request(
                request.method,
                _target(request),
                data=_encode(request),
                headers=request.headers,
                timeout=timeout,
            ) as response:
                return response.status, response.headers, await response.read()
        except TimeoutError as exc:
            raise UpstreamTimeoutError(
                f"{adapter.name} did not answer within {timeout.total:g} s", provider=adapter.name
            ) from exc
        except aiohttp.ClientError as exc:
            raise self._transport_error(adapter, request, exc, timeout) from exc

    @staticmethod
    def _transport_error(
        adapter: Adapter, request: UpstreamRequest, exc: aiohttp.ClientError, timeout: aiohttp.ClientTimeout
    ) -> UpstreamConnectionError | UpstreamTimeoutError:
        if isinstance(exc, aiohttp.ServerTimeoutError):
            return UpstreamTimeoutError(
                f"{adapter.name} did not answer within {timeout.sock_read or timeout.total:g} s",
                provider=adapter.name,
            )
        host = _host_of(request.url)
        if isinstance(exc, aiohttp.ClientConnectorError):
            return UpstreamConnectionError(
                f"could not connect to {adapter.name} at {host}: {exc.strerror or exc.os_error}",
                provider=adapter.name,
            )
        if isinstance(
            exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError, aiohttp.ClientOSError)
        ):
            return UpstreamConnectionError(
                f"the connection to {adapter.name} at {host} broke before a complete answer ({type(exc).__name__})",
                provider=adapter.name,
            )
        return UpstreamConnectionError(
            f"the request to {adapter.name} failed ({type(exc).__name__})", provider=adapter.name
        )


def _target(request: UpstreamRequest) -> str | yarl.URL:
    """A signed request's URL goes out byte for byte: aiohttp would otherwise re-quote it
    (``%3A`` → ``:``) and break the signature computed over it."""
    return yarl.URL(request.url, encoded=True) if request.raw_body is not None else request.url


def _encode(request: UpstreamRequest) -> bytes | None:
    if request.raw_body is not None:
        return request.raw_body
    return orjson.dumps(request.body) if request.body is not None else None


def _decode_error_body(raw: bytes, content_type: str) -> Any:
    if "json" in content_type or raw[:1] in (b"{", b"["):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    return raw.decode("utf-8", "replace")
