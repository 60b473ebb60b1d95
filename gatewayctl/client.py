"""Python client for a gatewayctl server (or an MLflow AI Gateway): wire calls only.

``GatewayClient`` (sync, on ``httpx.Client``) and ``AsyncGatewayClient`` (on ``httpx.AsyncClient``)
share everything but the I/O: request building, response decoding and error mapping live once in
``_ClientBase`` and the module's functions.

Behaviour kept from MLflow's ``MlflowGatewayClient``: the URI comes from the argument, then
``set_gateway_uri()``, then ``MLFLOW_GATEWAY_URI``; ``search_routes`` returns a :class:`PagedList`
whose ``.token`` is the next page token; ``route_url`` comes back absolute.

Errors (all :class:`~gateway_server.errors.GatewayError`):

- the gateway answered non-2xx: the typed error rebuilt from its JSON envelope, with its message
  (``RouteNotFoundError``, ``RateLimitError``, ``UpstreamTimeoutError``, ...);
- no answer at all: :class:`GatewayUnreachableError` (connection refused, DNS, dropped connection),
  or its subclass :class:`GatewayTimeoutError` when this client's own timeout expired. These are
  client-side and deliberately distinct from ``UpstreamConnectionError``/``UpstreamTimeoutError``,
  which mean the *gateway* could not reach the *provider*.

Retries: only GET requests (``get_route``, ``search_routes``) are retried, and only on a failed or
dropped connection, never on a timeout. POST and DELETE are never retried: a query that timed out
or lost its connection may already have reached the provider, and sending it again could run (and
bill) it twice.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterable, Mapping
from typing import Any, Literal, NamedTuple, TypeVar, overload
from urllib.parse import quote, urlparse

import httpx
from pydantic import ValidationError

from gateway_server.errors import GatewayError, InvalidRequestError
from gateway_server.routes import Route, RouteType
from gatewayctl._common import API_KEY_ENV, DEFAULT_TIMEOUT, GatewayTimeoutError, GatewayUnreachableError
from gatewayctl._envelope import error_from_payload
from gatewayctl._stream import AsyncChunkStream, ChunkStream, json_body
from gatewayctl._uri import GatewayUriError, resolve_gateway_uri
from gatewayctl._version import __version__

__all__ = [
    "API_KEY_ENV",
    "DEFAULT_TIMEOUT",
    "AsyncChunkStream",
    "AsyncGatewayClient",
    "ChunkStream",
    "GatewayClient",
    "GatewayTimeoutError",
    "GatewayUnreachableError",
    "PagedList",
]

CONNECT_TIMEOUT = 10.0
DEFAULT_RETRIES = 2
_BACKOFF = 0.1

# The MLflow wire contract (the server's own constants live in gateway_server.api.paths).
ROUTES_PATH = "/api/2.0/gateway/routes/"
USAGE_PATH = "/api/2.0/gateway/usage"
KEYS_PATH = "/api/2.0/gateway/keys"
STATS_PATH = "/api/2.0/gateway/stats"  # gatewayctl top's snapshot (docs/observability.md)

_T = TypeVar("_T")


class PagedList(list[_T]):
    """A page of results; ``token`` is what to pass as ``page_token`` for the next page (None at the end)."""

    def __init__(self, items: Iterable[_T] = (), token: str | None = None) -> None:
        super().__init__(items)
        self.token = token

    def to_list(self) -> list[_T]:
        return list(self)


class _Call(NamedTuple):
    method: str
    path: str
    params: dict[str, Any] | None = None
    body: Any = None


def _segment(name: str) -> str:
    """A route name as one URL path segment (``.``/``..`` are legal names but dot-segments in a URL)."""
    if name.strip(".") == "":
        return name.replace(".", "%2E")
    return quote(name, safe="")


def _get_route_call(name: str) -> _Call:
    return _Call("GET", ROUTES_PATH + _segment(name))


def _search_call(page_token: str | None, max_results: int | None) -> _Call:
    params: dict[str, Any] = {}
    if page_token is not None:
        params["page_token"] = page_token
    if max_results is not None:
        params["max_results"] = max_results
    return _Call("GET", ROUTES_PATH, params or None)


def _query_call(route: str, data: Mapping[str, Any], stream: bool) -> _Call:
    if stream:
        body = {**data, "stream": True}
    elif data.get("stream"):
        raise InvalidRequestError(
            'data has "stream": true; call query(..., stream=True) to iterate over the chunks',
            param="stream",
        )
    else:
        body = dict(data)
    return _Call("POST", f"/gateway/{_segment(route)}/invocations", body=body)


def _create_call(
    name: str | Mapping[str, Any],
    route_type: str | RouteType | None = None,
    model: Mapping[str, Any] | None = None,
) -> _Call:
    """``create_route(name, route_type, model)`` (MLflow's form) or ``create_route(definition)``:
    one whole route entry as in a config's ``routes:`` list (``fallbacks``, ``retry``, ``timeout``,
    ``limit``, a ``models`` split...), sent as given; the gateway validates it like its file."""
    if isinstance(name, Mapping):
        if route_type is not None or model is not None:
            raise InvalidRequestError(
                "give either one route definition (a mapping) or name, route_type and model", param="name"
            )
        body = dict(name)
        if not isinstance(body.get("name"), str):
            raise InvalidRequestError("the route definition has no 'name'", param="name")
    else:
        if route_type is None or model is None:
            raise InvalidRequestError(
                "create_route(name, route_type, model) needs all three (or one definition mapping)",
                param="route_type" if route_type is None else "model",
            )
        body = {"name": name, "route_type": route_type, "model": dict(model)}
    if "route_type" in body:
        try:
            body["route_type"] = RouteType(body["route_type"]).value
        except ValueError:
            allowed = ", ".join(t.value for t in RouteType)
            raise InvalidRequestError(
                f"route_type {body['route_type']!r} is not one of: {allowed}", param="route_type"
            ) from None
    return _Call("POST", ROUTES_PATH, body=body)


def _usage_call(by: str, since: str) -> _Call:
    return _Call("GET", USAGE_PATH, {"by": by, "since": since})


def _delete_call(name: str) -> _Call:
    return _Call("DELETE", ROUTES_PATH + _segment(name))


def _is_retryable(call: _Call, exc: httpx.TransportError) -> bool:
    # A GET that never got an answer is safe to send again; a timeout is not retried (it would
    # multiply the wait), and POST/DELETE never are (see the module docstring).
    return call.method == "GET" and isinstance(
        exc, httpx.ConnectError | httpx.ReadError | httpx.RemoteProtocolError
    )


def _error_from_response(response: httpx.Response) -> GatewayError:
    """The typed error for a non-2xx answer whose body has been read."""
    try:
        payload: Any = response.json()
    except ValueError:
        payload = response.text.strip()[:500] or f"HTTP {response.status_code} {response.reason_phrase}"
    return error_from_payload(response.status_code, payload, dict(response.headers))


class _ClientBase:
    """Configuration and decoding shared by the sync and async clients."""

    def __init__(
        self,
        gateway_uri: str | None,
        api_key: str | None,
        timeout: float,
        retries: int,
    ) -> None:
        self._uri = resolve_gateway_uri(gateway_uri)
        if urlparse(self._uri).scheme not in ("http", "https"):
            raise GatewayUriError(
                f"gatewayctl talks to gateways over http or https; cannot use {self._uri!r}. "
                "Pass the gateway's http(s) URL."
            )
        self._base = self._uri.rstrip("/")
        key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
        self._headers = {"User-Agent": f"gatewayctl/{__version__}", "Accept": "application/json"}
        if key:
            self._headers["Authorization"] = f"Bearer {key}"
        self._timeout = httpx.Timeout(timeout, connect=min(timeout, CONNECT_TIMEOUT))
        self._retries = retries

    @property
    def gateway_uri(self) -> str:
        """The URI of the gateway this client talks to."""
        return self._uri

    def __repr__(self) -> str:
        return f"{type(self).__name__}(gateway_uri={self._uri!r})"

    def _absolute(self, route_url: str) -> str:
        if urlparse(route_url).scheme:
            return route_url
        return self._base + "/" + route_url.lstrip("/")

    def _route(self, payload: Any) -> Route:
        try:
            route = Route.model_validate(payload)
        except ValidationError as exc:
            raise GatewayError(f"The gateway sent a route this client cannot read: {exc}") from exc
        return route.model_copy(update={"route_url": self._absolute(route.route_url)})

    def _page(self, payload: Any) -> PagedList[Route]:
        routes = payload.get("routes", []) if isinstance(payload, dict) else None
        if not isinstance(routes, list):
            raise GatewayError(f"The gateway sent a route list this client cannot read: {payload!r:.200}")
        return PagedList((self._route(item) for item in routes), payload.get("next_page_token") or None)

    def _no_answer(self, call: _Call, exc: httpx.TransportError) -> GatewayUnreachableError:
        if isinstance(exc, httpx.ConnectTimeout):
            return GatewayTimeoutError(
                f"Could not connect to the gateway at {self._uri} within {self._timeout.connect:g} s."
            )
        where = f"{call.method} {self._base}{call.path}"
        # Once a request may have been sent, say why it was not sent again.
        sent = not isinstance(exc, httpx.ConnectError)
        note = (
            " It was not retried: it may already have reached the provider."
            if sent and call.method == "POST"
            else ""
        )
        if isinstance(exc, httpx.TimeoutException):
            return GatewayTimeoutError(
                f"The gateway did not answer {where} within {self._timeout.read:g} s.{note}"
            )
        detail = str(exc) or type(exc).__name__
        return GatewayUnreachableError(
            f"Could not reach the gateway at {self._uri} ({where}): {detail}.{note}"
        )


class GatewayClient(_ClientBase):
    """Sync client of a gateway; MLflow's ``MlflowGatewayClient`` API plus typed errors and streaming.

    :param gateway_uri: e.g. ``http://127.0.0.1:5000``; default: ``set_gateway_uri()``, then
        ``MLFLOW_GATEWAY_URI``.
    :param api_key: sent as ``Authorization: Bearer``; default: ``GATEWAYCTL_API_KEY`` if set.
    :param timeout: seconds to wait for the gateway (connecting waits at most 10 s of it).
    :param retries: extra attempts of a GET whose connection failed; POST/DELETE are never retried.
    :param transport: an ``httpx.BaseTransport`` (e.g. ``httpx.MockTransport`` in tests).
    """

    def __init__(
        self,
        gateway_uri: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(gateway_uri, api_key, timeout, retries)
        self._http = httpx.Client(
            base_url=self._base, headers=self._headers, timeout=self._timeout, transport=transport
        )

    def _send(self, call: _Call, *, stream: bool = False) -> httpx.Response:
        request = self._http.build_request(call.method, call.path, params=call.params, json=call.body)
        attempt = 0
        while True:
            try:
                response = self._http.send(request, stream=stream)
            except httpx.TransportError as exc:
                if attempt < self._retries and _is_retryable(call, exc):
                    time.sleep(_BACKOFF * 2**attempt)
                    attempt += 1
                    continue
                raise self._no_answer(call, exc) from exc
            if response.is_success:
                return response
            try:
                response.read()
            finally:
                response.close()
            raise _error_from_response(response)

    def _json(self, call: _Call) -> Any:
        return json_body(self._send(call))

    def get_route(self, name: str) -> Route:
        """The route called ``name``; raises ``RouteNotFoundError`` if the gateway has none."""
        return self._route(self._json(_get_route_call(name)))

    def search_routes(
        self, page_token: str | None = None, *, max_results: int | None = None
    ) -> PagedList[Route]:
        """One page of routes; pass the returned ``.token`` as ``page_token`` for the next one."""
        return self._page(self._json(_search_call(page_token, max_results)))

    def list_routes(self) -> list[Route]:
        """Every route, following the page tokens to the end."""
        routes: list[Route] = []
        page = self.search_routes()
        routes.extend(page)
        seen = set()
        while page.token is not None and page.token not in seen:
            seen.add(page.token)
            page = self.search_routes(page.token)
            routes.extend(page)
        return routes

    @overload
    def query(
        self, route: str, data: Mapping[str, Any], *, stream: Literal[False] = ...
    ) -> dict[str, Any]: ...

    @overload
    def query(self, route: str, data: Mapping[str, Any], *, stream: Literal[True]) -> ChunkStream: ...

    def query(
        self, route: str, data: Mapping[str, Any], *, stream: bool = False
    ) -> dict[str, Any] | ChunkStream:
        """POST ``data`` to the route; the answer as a dict, or with ``stream=True`` an iterator of chunks.

        Never retried (see the module docstring). With ``stream=True`` the request is sent and its
        status checked before this returns; the connection stays open until the chunks are consumed
        or the returned :class:`ChunkStream` is closed.
        """
        call = _query_call(route, data, stream)
        if stream:
            return ChunkStream(self._send(call, stream=True))
        return self._json(call)

    def create_route(
        self,
        name: str | Mapping[str, Any],
        route_type: str | RouteType | None = None,
        model: Mapping[str, Any] | None = None,
    ) -> Route:
        """Create a route on the gateway (needs an admin key).

        ``create_route(name, route_type, model)`` as in MLflow (``model`` is ``{name, provider,
        config}``), or ``create_route(definition)`` with a whole route entry as in the config file.
        """
        return self._route(self._json(_create_call(name, route_type, model)))

    def get_usage(self, by: str = "key", since: str = "24h") -> dict[str, Any]:
        """Usage per key, route or model since a duration (``24h``) or an ISO time (admin scope)."""
        return self._json(_usage_call(by, since))

    def list_keys(self) -> list[dict[str, Any]]:
        """The gateway's keys: scopes, limits, budgets and what is left (admin scope; never a secret)."""
        return self._json(_Call("GET", KEYS_PATH))["keys"]
    def stats(self) -> dict[str, Any]:
        """The gateway's counters per route, every worker added up (what ``gatewayctl top`` shows)."""
        return self._json(_Call("GET", STATS_PATH))

    def delete_route(self, name: str) -> None:
        """Delete a route from the gateway (needs an admin key)."""
        self._send(_delete_call(name))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> GatewayClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


MlflowGatewayClient = GatewayClient


class AsyncGatewayClient(_ClientBase):
    """Async twin of :class:`GatewayClient`; ``transport`` is an ``httpx.AsyncBaseTransport``."""

    def __init__(
        self,
        gateway_uri: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(gateway_uri, api_key, timeout, retries)
        self._http = httpx.AsyncClient(
            base_url=self._base, headers=self._headers, timeout=self._timeout, transport=transport
        )

    async def _send(self, call: _Call, *, stream: bool = False) -> httpx.Response:
        request = self._http.build_request(call.method, call.path, params=call.params, json=call.body)
        attempt = 0
        while True:
            try:
                response = await self._http.send(request, stream=stream)
            except httpx.TransportError as exc:
                if attempt < self._retries and _is_retryable(call, exc):
                    await asyncio.sleep(_BACKOFF * 2**attempt)
                    attempt += 1
                    continue
                raise self._no_answer(call, exc) from exc
            if response.is_success:
                return response
            try:
                await response.aread()
            finally:
                await response.aclose()
            raise _error_from_response(response)

    async def _json(self, call: _Call) -> Any:
        return json_body(await self._send(call))

    async def get_route(self, name: str) -> Route:
        return self._route(await self._json(_get_route_call(name)))

    async def search_routes(
        self, page_token: str | None = None, *, max_results: int | None = None
    ) -> PagedList[Route]:
        return self._page(await self._json(_search_call(page_token, max_results)))

    async def list_routes(self) -> list[Route]:
        routes: list[Route] = []
        page = await self.search_routes()
        routes.extend(page)
        seen = set()
        while page.token is not None and page.token not in seen:
            seen.add(page.token)
            page = await self.search_routes(page.token)
            routes.extend(page)
        return routes

    @overload
    async def query(
        self, route: str, data: Mapping[str, Any], *, stream: Literal[False] = ...
    ) -> dict[str, Any]: ...

    @overload
    async def query(
        self, route: str, data: Mapping[str, Any], *, stream: Literal[True]
    ) -> AsyncChunkStream: ...

    async def query(
        self, route: str, data: Mapping[str, Any], *, stream: bool = False
    ) -> dict[str, Any] | AsyncChunkStream:
        call = _query_call(route, data, stream)
        if stream:
            return AsyncChunkStream(await self._send(call, stream=True))
        return await self._json(call)

    async def create_route(
        self,
        name: str | Mapping[str, Any],
        route_type: str | RouteType | None = None,
        model: Mapping[str, Any] | None = None,
    ) -> Route:
        """Create a route; the same two forms as :meth:`GatewayClient.create_route`."""
        return self._route(await self._json(_create_call(name, route_type, model)))

    async def get_usage(self, by: str = "key", since: str = "24h") -> dict[str, Any]:
        return await self._json(_usage_call(by, since))

    async def list_keys(self) -> list[dict[str, Any]]:
        return (await self._json(_Call("GET", KEYS_PATH)))["keys"]
    async def stats(self) -> dict[str, Any]:
        """The gateway's counters per route, every worker added up (what ``gatewayctl top`` shows)."""
        return await self._json(_Call("GET", STATS_PATH))

    async def delete_route(self, name: str) -> None:
        await self._send(_delete_call(name))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncGatewayClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
