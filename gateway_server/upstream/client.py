"""The only network code of the providers: one connection pool, failures classified.

It is also the one choke point of redaction: every error that leaves :class:`UpstreamClient`
(status, protocol, mid-stream, parse failures; before or after a stream's first chunk) has passed
through :func:`~gateway_server.secrets.scrub` with the model's secrets, so no provider key (whole
or cut in half) and no control character of an upstream's text reaches a caller or a log line.

The bytes travel over an :class:`~gateway_server.upstream.transport.UpstreamTransport`: by default
:mod:`gateway_server.upstream.pool`, a small HTTP/1.1 client made for this hot path (why not aiohttp
or httpx, with figures: its docstring and docs/performance.md), created once by the app's lifespan
and shared by every route; adapters never see it.
"""

from __future__ import annotations

import math
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import aclosing
from typing import Any
from urllib.parse import urlsplit

import orjson

from gateway_server.errors import (
    MAX_RETRY_AFTER,
    GatewayError,
    UpstreamConnectionError,
    UpstreamProtocolError,
    UpstreamStatusError,
    UpstreamTimeoutError,
)
from gateway_server.observability import CURRENT
from gateway_server.providers.base import Adapter, UpstreamRequest
from gateway_server.providers.streaming import answer_chunks
from gateway_server.routes import RouteType
from gateway_server.secrets import scrub
from gateway_server.upstream.pool import ConnectionPool
from gateway_server.upstream.transport import (
    ConnectError,
    ConnectionBroken,
    UnsendableRequest,
    UpstreamTransport,
)

__all__ = ["ConnectionPool", "UpstreamClient", "parse_retry_after"]


def parse_retry_after(value: str | None) -> float | None:
    """An upstream's ``Retry-After`` in seconds, or None. ``inf``, ``nan`` and absurd values (1e308)
    are not waits anyone should obey: values beyond ``MAX_RETRY_AFTER`` are capped to it."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # an HTTP date: rare from LLM APIs; the caller falls back to its own backoff
    if not seconds >= 0 or seconds == math.inf:  # nan compares False
        return None
    return min(seconds, float(MAX_RETRY_AFTER))


def _host_of(url: str) -> str:
    try:
        parsed = urlsplit(url)
        return f"{parsed.hostname}:{parsed.port or (443 if parsed.scheme == 'https' else 80)}"
    except ValueError:
        return "the upstream"


class UpstreamClient:
    """Sends an adapter's request and turns every kind of failure into an ``Upstream*Error``.
    Timeouts are in seconds."""

    __slots__ = ("transport",)

    def __init__(self, transport: UpstreamTransport) -> None:
        self.transport = transport

    async def call(
        self, adapter: Adapter, route_type: RouteType, payload: dict[str, Any], timeout: float
    ) -> dict[str, Any]:
        try:  # the choke point: every error below leaves scrubbed (one try, no extra coroutine)
            if adapter.refresh is not None:  # credentials due for a (threaded) refresh: Bedrock
                await adapter.refresh()
            request = adapter.build_request(route_type, payload)
            record = CURRENT.get()  # adds X-Request-Id (and traceparent when tracing)
            try:
                status, headers, raw = await self.transport.request(
                    request.method,
                    request.url,
                    request.headers if record is None else record.upstream_headers(request.headers),
                    _encode(request),
                    timeout,
                )
            except TimeoutError as exc:
                raise UpstreamTimeoutError(
                    f"{adapter.name} did not answer within {timeout:g} s", provider=adapter.name
                ) from exc
            except (OSError, UnsendableRequest) as exc:
                raise self._transport_error(adapter, request, exc) from exc
            return self._answer(adapter, route_type, status, headers, raw)
        except GatewayError as exc:
            scrub(exc, adapter.secrets())
            raise

    def _answer(
        self, adapter: Adapter, route_type: RouteType, status: int, headers: Mapping[str, str], raw: bytes
    ) -> dict[str, Any]:
        if status >= 300:
            self._raise_status(adapter, status, headers, raw)
        content_type = headers.get("content-type", "")
        if "json" not in content_type:
            raise UpstreamProtocolError(
                f"{adapter.name} answered with content type '{content_type or 'none'}', expected JSON",
                provider=adapter.name,
                upstream_status=status,
            )
        return self._parse_json(adapter, route_type, status, raw)

    @staticmethod
    def _parse_json(adapter: Adapter, route_type: RouteType, status: int, raw: bytes) -> dict[str, Any]:
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
        self, adapter: Adapter, route_type: RouteType, payload: dict[str, Any], timeout: float
    ) -> AsyncIterator[dict[str, Any]]:
        """Standard chunks one by one (see :meth:`stream_batches`)."""
        async with aclosing(self.stream_batches(adapter, route_type, payload, timeout)) as batches:
            async for batch in batches:
                for chunk in batch:
                    yield chunk

    async def stream_batches(
        self, adapter: Adapter, route_type: RouteType, payload: dict[str, Any], timeout: float
    ) -> AsyncGenerator[list[dict[str, Any]], None]:
        """Standard chunks as the upstream sends them, grouped by upstream read: whatever one read
        brought is forwarded together (one write to the client instead of one per event, and no
        waiting for more). Nothing is yielded before the upstream has answered 2xx, so a failure
        before the first event raises like a normal call. ``timeout`` bounds the wait for the
        answer's head and each wait for the next bytes, not the stream's whole length."""
        if adapter.refresh is not None:
            await adapter.refresh()
        request = adapter.build_stream_request(route_type, payload)
        decoder = adapter.stream_decoder()
        read = adapter.read_stream
        state: dict[str, Any] = {"payload": payload}  # the caller's request, for the adapter to read
        response = None
        streaming = False
        record = CURRENT.get()
        try:
            response = await self.transport.send(
                request.method,
                request.url,
                request.headers if record is None else record.upstream_headers(request.headers),
                _encode(request),
                timeout,
            )
            if response.status >= 300:
                self._raise_status(adapter, response.status, response.headers, await response.read())
            if _is_plain_json(response.headers.get("content-type", "")):
                # The upstream ignored "stream": its whole answer, as the chunks that say the same.
                yield answer_chunks(
                    route_type, self._parse_json(adapter, route_type, response.status, await response.read())
                )
                return
            streaming = True
            async for data in response.iter_chunks(timeout):
                batch = read(route_type, decoder, data, state)
                if batch:
                    yield batch
            batch = read(route_type, decoder, None, state)
            if batch:
                yield batch
        except TimeoutError as exc:
            what = "stopped sending for more than" if streaming else "did not answer within"
            raise UpstreamTimeoutError(f"{adapter.name} {what} {timeout:g} s", provider=adapter.name) from exc
        except (OSError, UnsendableRequest) as exc:
            raise scrub(self._transport_error(adapter, request, exc), adapter.secrets()) from exc
        except GatewayError as exc:  # status, protocol and mid-stream errors, before or after a chunk
            scrub(exc, adapter.secrets())
            raise
        finally:
            if response is not None:
                response.release()

    def _raise_status(self, adapter: Adapter, status: int, headers: Mapping[str, str], raw: bytes) -> None:
        body = _decode_error_body(raw, headers.get("content-type", ""))
        upstream_status, reason = adapter.upstream_error(status, body, headers)
        raise UpstreamStatusError(
            provider=adapter.name,
            upstream_status=upstream_status,
            reason=reason,  # scrubbed by the caller, with the message built from it
            retry_after=parse_retry_after(headers.get("retry-after")),
        )

    @staticmethod
    def _transport_error(
        adapter: Adapter, request: UpstreamRequest, exc: OSError | UnsendableRequest
    ) -> UpstreamConnectionError:
        host = _host_of(request.url)
        if isinstance(exc, ConnectError):
            return UpstreamConnectionError(
                f"could not connect to {adapter.name} at {host}: {exc.strerror or exc}", provider=adapter.name
            )
        if isinstance(exc, ConnectionBroken):
            return UpstreamConnectionError(
                f"the connection to {adapter.name} at {host} broke before a complete answer ({exc})",
                provider=adapter.name,
            )
        if isinstance(exc, UnsendableRequest):
            return UpstreamConnectionError(
                f"the request to {adapter.name} could not be sent ({exc})", provider=adapter.name
            )
        return UpstreamConnectionError(
            f"the connection to {adapter.name} at {host} failed ({exc.strerror or type(exc).__name__})",
            provider=adapter.name,
        )


def _is_plain_json(content_type: str) -> bool:
    """``application/json`` and the like, but not a JSON-based stream format (ndjson, eventstream)."""
    content_type = content_type.lower()
    return "json" in content_type and "stream" not in content_type and "ndjson" not in content_type


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
