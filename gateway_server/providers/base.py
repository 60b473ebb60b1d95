"""What every provider module implements: a config model and an adapter of pure transforms.

An adapter is built once per configured model, at config-load time, so URLs and headers are
computed once and not on every request. Its methods are pure: they take the standard request
(OpenAI-shaped dict, already validated) and return an :class:`UpstreamRequest`, or take the
upstream's decoded JSON body and return the standard response (OpenAI-shaped dict). No network,
no clock, no globals: ``upstream/client.py`` does the I/O and the dispatcher fills ``id``/``created``
when a provider's answer lacks them.

Standard shapes (what ``parse_*`` return):

- chat: ``{"object": "chat.completion", "model", "choices": [{"index", "message": {"role",
  "content", "tool_calls"?}, "finish_reason"}], "usage": {"prompt_tokens", "completion_tokens",
  "total_tokens"}}`` (``id``/``created`` optional)
- completions: ``{"object": "text_completion", "model", "choices": [{"index", "text",
  "finish_reason"}], "usage"}``
- embeddings: ``{"object": "list", "model", "data": [{"object": "embedding", "index",
  "embedding"}], "usage": {"prompt_tokens", "total_tokens"}}``

A route type the provider does not offer inherits the default, which raises
:class:`UnsupportedRouteTypeError` (HTTP 501).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict

from gateway_server.errors import InvalidRequestError, UnsupportedRouteTypeError, UpstreamProtocolError
from gateway_server.providers.catalog import ProviderSpec, spec_of
from gateway_server.providers.streaming import SSEDecoder, StreamEvent
from gateway_server.routes import RouteType
from gateway_server.secrets import Secret

__all__ = ["Adapter", "ProviderConfig", "UpstreamRequest", "origin_of", "reason_from_body"]


class ProviderConfig(BaseModel):
    """Base of every provider's ``model.config``: unknown keys are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def server_identity_field(self) -> str | None:
        """The field (dotted) to blame when this config would act with the server's own identity
        rather than a key it holds (Bedrock without keys: the server's AWS role); None otherwise."""
        return None

    def secrets(self) -> tuple[Secret, ...]:
        """Every secret this config holds (for redaction of logs and errors)."""
        found: list[Secret] = []
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, Secret):
                found.append(value)
            elif isinstance(value, ProviderConfig):
                found.extend(value.secrets())
        return tuple(found)


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    """One HTTP call to the upstream: everything ``upstream/client.py`` needs and nothing else."""

    url: str
    headers: Mapping[str, str]
    body: Any = None  # JSON-serialisable; None for a GET
    method: str = "POST"
    # Set by an adapter whose upstream signs the exact bytes (Bedrock SigV4): pre-encoded body.
    # The URL of such a request is sent verbatim (no re-quoting), since it is signed too.
    raw_body: bytes | None = field(default=None)


_DEFAULT_PORTS = {"http": "80", "https": "443"}


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of ``url``, lowercased, without a default port or credentials: the
    upstream an adapter calls, as the connection pool and the circuit breakers see it."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = parts.netloc.rpartition("@")[2].lower()
    default = _DEFAULT_PORTS.get(scheme)
    if default and host.endswith(f":{default}"):
        host = host[: -len(default) - 1]
    return f"{scheme}://{host}"


def reason_from_body(body: Any, fallback: str = "") -> str:
    """The provider's own words from an error body, for the common shapes.

    ``{"error": {"message": M}}`` (OpenAI, Anthropic, Mistral, Gemini), ``{"error": M}``,
    ``{"message": M}`` (Cohere, Bedrock), ``{"detail": M}``; a text body is used as is.
    """
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            message = error.get("message")
            if isinstance(message, str) and message:
                return message
        if isinstance(error, str) and error:
            return error
        for key in ("message", "detail", "Message"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value
        return fallback or str(body)[:500]
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str) and body.strip():
        return body.strip()[:500]
    return fallback


class Adapter:
    """One provider's translation between the gateway's standard shapes and its wire format.

    A provider's adapter names its row of the provider table (``providers/catalog.py``):
    ``class AnthropicAdapter(Adapter, provider="anthropic")``; the name, display name, route
    types, streaming route types and error statuses come from that row."""

    spec: ClassVar[ProviderSpec]
    name: ClassVar[str]
    display_name: ClassVar[str]
    config_model: ClassVar[type[ProviderConfig]]
    route_types: ClassVar[frozenset[RouteType]] = frozenset()
    # Route types whose upstream streams (chat and/or completions); empty: no streaming.
    streaming_route_types: ClassVar[frozenset[RouteType]] = frozenset()
    # The provider's own HTTP statuses, as the gateway's status table reads them (529 -> 503).
    error_statuses: ClassVar[Mapping[int, int]] = {}

    def __init_subclass__(cls, provider: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if provider is not None:
            spec = cls.spec = spec_of(provider)
            cls.name = spec.name
            cls.display_name = spec.display_name
            cls.route_types = spec.route_types
            cls.streaming_route_types = spec.streaming_route_types
            cls.error_statuses = spec.error_statuses

    # The exact upstream this adapter calls (``origin_of`` its base URL), set by each adapter's
    # ``__init__``: with the model name it keys the circuit breaker (breaker.upstream_key).
    origin: str = ""

    # An adapter with state to load by I/O (Bedrock's AWS credentials) sets this to a coroutine
    # function: the upstream client awaits it before building each request, the server at start-up.
    # It does the I/O off the event loop and returns at once when nothing is due.
    refresh: Callable[[], Awaitable[None]] | None = None

    def __init__(self, config: ProviderConfig, model_name: str | None) -> None:
        self.config = config
        self.model_name = model_name

    @classmethod
    def base_url_of(cls, config: ProviderConfig) -> str | None:
        """The base URL a config sends requests to: the catalog's ``base_field`` when the config
        sets it, else the provider's default. None for a provider with no upstream host (``fake``):
        what ``credentials:`` binds and what run-time routes are checked against (``trust.py``)."""
        field = cls.spec.base_field
        if field is None:
            return None
        value: Any = config
        for part in field.split("."):
            value = getattr(value, part, None)
        return value or cls.spec.default_base

    # ----------------------------------------------------------- dispatch by route type

    def build_request(self, route_type: RouteType, payload: dict[str, Any]) -> UpstreamRequest:
        if route_type is RouteType.CHAT:
            return self.build_chat_request(payload)
        if route_type is RouteType.COMPLETIONS:
            return self.build_completions_request(payload)
        return self.build_embeddings_request(payload)

    def parse_response(self, route_type: RouteType, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise UpstreamProtocolError(
                f"{self.name} returned a JSON {type(body).__name__}, expected an object",
                provider=self.name,
            )
        try:
            if route_type is RouteType.CHAT:
                return self.parse_chat_response(body)
            if route_type is RouteType.COMPLETIONS:
                return self.parse_completions_response(body)
            return self.parse_embeddings_response(body)
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            raise UpstreamProtocolError(
                f"{self.name} returned a response the gateway cannot read "
                f"({type(exc).__name__}: {exc}); it does not have the documented shape",
                provider=self.name,
            ) from exc

    # ----------------------------------------------------------- per route type (pure)

    def _unsupported(self, route_type: RouteType) -> UnsupportedRouteTypeError:
        return UnsupportedRouteTypeError(self.name, route_type.value)

    def build_chat_request(self, payload: dict[str, Any]) -> UpstreamRequest:
        raise self._unsupported(RouteType.CHAT)

    def parse_chat_response(self, body: dict[str, Any]) -> dict[str, Any]:
        raise self._unsupported(RouteType.CHAT)

    def build_completions_request(self, payload: dict[str, Any]) -> UpstreamRequest:
        raise self._unsupported(RouteType.COMPLETIONS)

    def parse_completions_response(self, body: dict[str, Any]) -> dict[str, Any]:
        raise self._unsupported(RouteType.COMPLETIONS)

    def build_embeddings_request(self, payload: dict[str, Any]) -> UpstreamRequest:
        raise self._unsupported(RouteType.EMBEDDINGS)

    def parse_embeddings_response(self, body: dict[str, Any]) -> dict[str, Any]:
        raise self._unsupported(RouteType.EMBEDDINGS)

    # ----------------------------------------------------------- streaming (pure)

    def build_stream_request(self, route_type: RouteType, payload: dict[str, Any]) -> UpstreamRequest:
        """The upstream request for ``"stream": true`` (payload still carries ``stream``).

        Default: the provider's normal request, for upstreams that stream on ``"stream": true``
        in the body (OpenAI style). Providers with another streaming URL override this.
        """
        self.check_streaming(route_type)
        return self.build_request(route_type, payload)

    def check_streaming(self, route_type: RouteType) -> None:
        if route_type not in self.streaming_route_types:
            raise InvalidRequestError(
                f"Provider '{self.name}' does not stream {route_type.value}; send the request without 'stream'.",
                param="stream",
            )

    def stream_decoder(self) -> SSEDecoder:
        """An incremental decoder of the upstream's stream body (SSE unless overridden)."""
        return SSEDecoder()

    def read_stream(
        self, route_type: RouteType, decoder: Any, data: bytes | None, state: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """The standard chunks of one upstream read (``data=None``: the body has ended). An event
        the gateway cannot read (not UTF-8, not JSON, not the documented shape, too large) is an
        :class:`UpstreamProtocolError`: a 502 before the stream starts, an error event after."""
        try:
            events = decoder.feed(data) if data is not None else decoder.close()
            return [chunk for event in events for chunk in self.parse_stream_event(route_type, event, state)]
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            raise UpstreamProtocolError(
                f"{self.name} sent a stream event the gateway cannot read ({type(exc).__name__}: {exc})",
                provider=self.name,
            ) from exc

    def parse_stream_event(
        self, route_type: RouteType, event: StreamEvent, state: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """Standard chunks (``providers/streaming.py``) for one upstream event; ``state`` is a dict
        private to one stream, for providers that must carry something from event to event
        (token counts, tool-call indices); it starts as ``{"payload": the caller's payload}``.
        Return ``[]`` for events that carry nothing."""
        raise self._unsupported(route_type)

    # ----------------------------------------------------------- errors

    def error_reason(self, status: int, body: Any) -> str:
        """The provider's reason for a non-2xx answer, in its own words (never a secret)."""
        return reason_from_body(body, fallback=f"HTTP {status}")

    def map_error_status(self, status: int, body: Any) -> int:
        """The upstream status as the gateway's table should see it.

        Default: the provider table's ``error_statuses`` (Anthropic's 529 "overloaded" is a 503).
        """
        return self.error_statuses.get(status, status)

    def upstream_error(self, status: int, body: Any, headers: Mapping[str, str]) -> tuple[int, str]:
        """``(status for the gateway's table, reason)`` of a non-2xx answer.

        Default: :meth:`map_error_status` and :meth:`error_reason`. Providers whose error kind is
        in a response header (Bedrock's ``x-amzn-ErrorType``) override this one instead.
        """
        return self.map_error_status(status, body), self.error_reason(status, body)

    def secrets(self) -> tuple[Secret, ...]:
        return self.config.secrets()
