"""The only network code of the providers: one pooled aiohttp session, failures classified.

Why aiohttp and not httpx here: on this project's 2-core benchmark machine httpx/httpcore cost
about 9x more CPU per upstream call (SPEC §1). The session is created once by the app's lifespan
and shared by every route; adapters never see it.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson

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
        status, content_type, raw, retry_after = await self._send(adapter, request, timeout)
        if status >= 300:
            body = _decode_error_body(raw, content_type)
            reason = redact(adapter.error_reason(status, body), adapter.secrets())
            raise UpstreamStatusError(
                provider=adapter.name,
                upstream_status=adapter.map_error_status(status, body),
                reason=reason,
                retry_after=retry_after,
            )
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

    async def _send(
        self, adapter: Adapter, request: UpstreamRequest, timeout: aiohttp.ClientTimeout
    ) -> tuple[int, str, bytes, float | None]:
        data = (
            request.raw_body
            if request.raw_body is not None
            else (orjson.dumps(request.body) if request.body is not None else None)
        )
        try:
            async with self.session.request(
                request.method, request.url, data=data, headers=request.headers, timeout=timeout
            ) as response:
                raw = await response.read()
                return (
                    response.status,
                    response.headers.get("Content-Type", ""),
                    raw,
                    parse_retry_after(response.headers.get("Retry-After")),
                )
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise UpstreamTimeoutError(
                f"{adapter.name} did not answer within {timeout.total:g} s", provider=adapter.name
            ) from exc
        except aiohttp.ClientConnectorError as exc:
            raise UpstreamConnectionError(
                f"could not connect to {adapter.name} at {_host_of(request.url)}: {exc.strerror or exc.os_error}",
                provider=adapter.name,
            ) from exc
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError, aiohttp.ClientOSError) as exc:
            raise UpstreamConnectionError(
                f"the connection to {adapter.name} at {_host_of(request.url)} broke before a complete answer "
                f"({type(exc).__name__})",
                provider=adapter.name,
            ) from exc
        except aiohttp.ClientError as exc:
            raise UpstreamConnectionError(
                f"the request to {adapter.name} failed ({type(exc).__name__})", provider=adapter.name
            ) from exc


def _decode_error_body(raw: bytes, content_type: str) -> Any:
    if "json" in content_type or raw[:1] in (b"{", b"["):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    return raw.decode("utf-8", "replace")
