"""Pass-through of an agent protocol to its own vendor, as adapters of the one upstream client.

An Anthropic route asked on ``/v1/messages`` (or ``/v1/messages/count_tokens``), and an OpenAI
route asked on ``/v1/responses``, get the caller's request as it is (thinking, ``cache_control``,
citations, server tools, reasoning items... all kept), with two changes: ``model`` is the route's
model, and the credentials are the route's (the caller's gateway key never leaves the gateway).
``anthropic-version`` and ``anthropic-beta`` from the caller are kept. The answer comes back as it
is; a stream is forwarded event by event (:class:`NativeEvents`).

These wrap the provider's own adapter (its URL, headers, error mapping, secrets) and plug into
``UpstreamClient`` like any adapter, so deadlines, retries, fallbacks and breakers are the same.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway_server.errors import GatewayError, UpstreamStatusError
from gateway_server.providers.base import Adapter, UpstreamRequest
from gateway_server.providers.streaming import StreamEvent
from gateway_server.routes import RouteType

__all__ = ["NativeAdapter", "NativeEvents", "anthropic_native", "openai_native"]

_FORWARDED = (b"anthropic-version", b"anthropic-beta")
# Events that carry the upstream's usage: Anthropic's start and delta, the Responses API's last one.
_USAGE_EVENTS = frozenset(
    {"message_start", "message_delta", "response.completed", "response.incomplete", "response.failed"}
)


class NativeAdapter(Adapter):
    """One call of a protocol to its vendor through ``inner``'s URL base, headers and errors."""

    def __init__(self, inner: Adapter, url: str, headers: dict[str, str], error_event: str) -> None:
        super().__init__(inner.config, inner.model_name)
        self.inner = inner
        self.origin = inner.origin  # the same upstream (breaker key, transport)
        self.url = url
        self.headers = headers
        self.error_event = error_event

    def build_request(self, route_type: RouteType, payload: dict[str, Any]) -> UpstreamRequest:
        body = {**payload, "model": self.model_name} if self.model_name else payload
        return UpstreamRequest(url=self.url, headers=self.headers, body=body)

    def build_stream_request(self, route_type: RouteType, payload: dict[str, Any]) -> UpstreamRequest:
        return self.build_request(route_type, payload)

    def parse_response(self, route_type: RouteType, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            return super().parse_response(route_type, body)  # the shape error
        return body

    def parse_stream_event(
        self, route_type: RouteType, event: StreamEvent, state: dict[str, Any]
    ) -> list[Any]:
        if event.event == self.error_event:
            # Raised, so that an error before anything was sent is retried or answered with its
            # status; after the start the caller sends it back as the protocol's error event.
            try:
                data = orjson.loads(event.data)
                nested = data.get("error")  # Anthropic: {"error": {"type", "message"}}; OpenAI: flat
                error = nested if isinstance(nested, dict) else data
                kind = error.get("type") if error is nested else error.get("code")
                message = error.get("message")
            except (orjson.JSONDecodeError, AttributeError):
                kind, message = None, event.data
            status = _ERROR_STATUS.get(kind or "", 500)
            raise UpstreamStatusError(
                provider=self.name,
                upstream_status=self.inner.map_error_status(status, None),
                reason=message or kind or "error event in the stream",
            )
        return [event]

    def upstream_error(self, status: int, body: Any, headers: Any) -> tuple[int, str]:
        return self.inner.upstream_error(status, body, headers)

    def secrets(self) -> tuple[Any, ...]:
        return self.inner.secrets()


_ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "rate_limit_exceeded": 429,
    "api_error": 500,
    "server_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


def _caller_headers(headers: list[tuple[bytes, bytes]]) -> dict[str, str]:
    return {name.decode("latin-1"): value.decode("latin-1") for name, value in headers if name in _FORWARDED}


class _NativeAnthropic(NativeAdapter):
    name = "anthropic"  # the provider's own name, in errors and logs
    display_name = "Anthropic (native)"


class _NativeOpenAI(NativeAdapter):
    name = "openai"
    display_name = "OpenAI (native)"


def anthropic_native(
    inner: Any, scope_headers: list[tuple[bytes, bytes]], count_tokens: bool = False
) -> NativeAdapter:
    """``/v1/messages`` (or ``count_tokens``) to an Anthropic route's upstream."""
    url = inner.url + ("/count_tokens" if count_tokens else "")
    return _NativeAnthropic(inner, url, {**inner.headers, **_caller_headers(scope_headers)}, "error")


def openai_native(inner: Any) -> NativeAdapter:
    """``/v1/responses`` to an OpenAI route's upstream (``{base}/responses``)."""
    wire = inner.wire
    url = wire.urls[RouteType.CHAT].replace("/chat/completions", "/responses", 1)
    return _NativeOpenAI(inner, url, dict(wire.headers), "error")


class NativeEvents:
    """The translator of a passed-through stream: each upstream event is sent as it came; the
    stream must end with the protocol's last event (``message_stop``, ``response.completed`` ...),
    else the client gets an error event instead of a silently truncated answer."""

    __slots__ = ("_ended", "_error", "_ping", "_terminal", "final", "usage")

    def __init__(self, terminal: frozenset[str], error: Any, ping: bytes | None) -> None:
        self._terminal = terminal
        self._error = error
        self._ping = ping
        self._ended = False
        self.final: str | None = None  # the data of the last event (the whole response, for Responses)
        self.usage: dict[str, Any] = {}  # the upstream's own counts, as its events report them

    def feed(self, batch: list[StreamEvent]) -> bytes:
        out = []
        for item in batch:
            if item.event in _USAGE_EVENTS:
                self._count(item)
            if item.event in self._terminal:
                self._ended = True
                self.final = item.data
            if item.event:
                out.append(b"event: " + item.event.encode() + b"\n")
            out.append(b"data: " + item.data.encode() + b"\n\n")
        return b"".join(out)

    def _count(self, item: StreamEvent) -> None:
        try:
            data = orjson.loads(item.data)
        except orjson.JSONDecodeError:
            return
        holder = data.get("message") or data.get("response") or data  # start / completed / delta
        counts = holder.get("usage") if isinstance(holder, dict) else None
        if isinstance(counts, dict):
            self.usage.update({key: value for key, value in counts.items() if value is not None})

    def finish(self) -> bytes:
        if self._ended:
            return b""
        return self.fail(GatewayError("the upstream stream ended before its last event", status_code=502))

    def fail(self, exc: GatewayError) -> bytes:
        return self._error(exc)  # type: ignore[no-any-return]

    def ping(self) -> bytes | None:
        return self._ping
