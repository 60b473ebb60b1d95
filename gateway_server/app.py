"""Build the gateway's ASGI application from a validated config.

The app is two layers. :class:`GatewayApp` answers the invocation paths itself (the hot path,
``api/invocations.py``), ``GET /health``, ``GET /metrics``, and the ASGI lifespan, which owns the
one upstream connection pool and the config watcher. Everything else (route listing, admin, docs,
OpenAPI) is a FastAPI app, built in a worker thread on the first request that needs it (that
request waits ~0.3 s, once per process; the loop keeps serving meanwhile). FastAPI, Starlette and
the admin code are about 11 MiB of memory and a third of the start-up, and a gateway that only
proxies, answers health checks and is scraped for metrics never needs them.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any

import orjson

from gateway_server.api import paths
from gateway_server.api.body_guard import guard
from gateway_server.api.envelope import REQUEST_ID_SCOPE, error_body
from gateway_server.api.invocations import handle_invocation, handle_resource, match_invocation
from gateway_server.app_state import GatewayState
from gateway_server.auth import ALLOW_UNAUTHENTICATED_ADMIN_ENV, QUERY
from gateway_server.config import GatewayConfig, load_config
from gateway_server.errors import GatewayError
from gateway_server.logs import AccessLog
from gateway_server.observability import REQUEST_ID_HEADER, request_id_of
from gateway_server.reload import RELOAD_INTERVAL, watch_config
from gateway_server.tracing import build_tracer, tracing_configured
from gateway_server.upstream.clients import Upstreams
from gateway_server.upstream.connect import ProxyRefused, check_proxy
from gateway_server.upstream.pool import ConnectionPool

__all__ = [
    "CONFIG_ENV",
    "GatewayApp",
    "build_api",
    "create_app",
    "create_app_from_env",
    "create_app_from_path",
]

logger = logging.getLogger("gateway_server")

CONFIG_ENV = "GATEWAYCTL_CONFIG"
RELOAD_INTERVAL_ENV = "GATEWAYCTL_RELOAD_INTERVAL"  # seconds; 0 turns hot reload off

ASGIApp = Callable[..., Any]
_HEALTH_BODY = b'{"status":"OK"}'
_HEALTH_HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"15")]
_METRICS_TYPE = b"text/plain; version=0.0.4; charset=utf-8"


class GatewayApp:
    """ASGI entry point: invocations, /health and the lifespan here; the rest to FastAPI."""

    def __init__(
        self,
        state: GatewayState,
        *,
        pool: ConnectionPool | None = None,
        reload_interval: float | None = None,
        freeze_heap: bool = False,
    ) -> None:
        self.state = state
        self.freeze_heap = freeze_heap  # a serving process's choice (runner), not a library's
        self._pool = pool
        self._reload_interval = reload_interval
        self._api: ASGIApp | None = None
        self._api_build: asyncio.Future[ASGIApp] | None = None
        self._resources: AsyncExitStack | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind == "http":
            path = scope["path"]
            invocation = match_invocation(path)
            if invocation is not None:
                if invocation.resource is None:
                    await handle_invocation(self.state, invocation, scope, receive, send)
                else:  # GET/DELETE /v1/responses/{id}
                    await handle_resource(self.state, invocation, scope, send)
                return
            # Every other path answers with an X-Request-Id too (the invocation handlers set their
            # own, so the hot path pays nothing for this): in the header, and in error bodies.
            request_id = request_id_of(scope["headers"])
            id_header = (REQUEST_ID_HEADER, request_id.encode())
            if scope["method"] in ("GET", "HEAD"):
                if path == paths.HEALTH:
                    headers = [*_HEALTH_HEADERS, id_header]
                    await send({"type": "http.response.start", "status": 200, "headers": headers})
                    await send({"type": "http.response.body", "body": _HEALTH_BODY})
                    return
                if path == paths.METRICS:
                    await _send_metrics(self.state, send, id_header)
                    return
                if path == paths.STATS:
                    await _send_stats(self.state, scope, send, id_header)
                    return
            scope[REQUEST_ID_SCOPE] = request_id  # for the error bodies of guard() and FastAPI
            send = _with_header(send, id_header)
            guarded = await guard(self.state, scope, receive, send)  # key and body cap before FastAPI
            if guarded is None:
                return
            receive = guarded
        elif kind == "lifespan":
            await self._lifespan(receive, send)
            return
        api = self._api or await self.api()
        await api(scope, receive, send)

    async def api(self) -> ASGIApp:
        """The FastAPI side, built once (in a worker thread: the event loop keeps serving)."""
        if self._api is None:
            if self._api_build is None:
                self._api_build = asyncio.ensure_future(asyncio.to_thread(build_api, self.state))
                if self.freeze_heap:  # what the build made is long-lived too
                    self._api_build.add_done_callback(_freeze_heap)
            self._api = await asyncio.shield(self._api_build)
        return self._api

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self._start()
                except ProxyRefused as exc:  # the operator's to fix: the message, no traceback
                    logger.error("start-up refused: %s", exc)
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                except Exception as exc:  # the process edge: uvicorn reports it and exits
                    logger.exception("start-up failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
                if self.freeze_heap:  # ~20 ms, once, while uvicorn opens its socket
                    asyncio.get_running_loop().call_soon(_freeze_heap)
            elif message["type"] == "lifespan.shutdown":
                await self._stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _start(self) -> None:
        # HTTPS_PROXY set and an HTTPS upstream it covers: refuse now, not on the first call.
        check_proxy(_upstream_origins(self.state))
        stack = AsyncExitStack()
        warming = _warm_up(self.state)  # AWS credentials, in worker threads, while we start serving
        stack.push_async_callback(_cancel, warming)
        pool = self._pool
        if pool is None:
            pool = ConnectionPool()
            stack.push_async_callback(pool.close)
        upstreams = Upstreams(pool, default=self.state.config.server.upstream_transport)
        stack.push_async_callback(upstreams.close)
        self.state.upstream = upstreams
        if tracing_configured(self.state.config):  # the OpenTelemetry packages load only then
            tracer = build_tracer(self.state.config)
            self.state.tracer = tracer
            stack.callback(tracer.shutdown)  # type: ignore[union-attr]
        routes = self.state.routes
        # The route store loads what it holds before start-up completes (Redis: the shared routes).
        await stack.enter_async_context(routes.running())
        governor = self.state.governor
        if governor is not None:  # usage and budgets: written until the end, closed before Redis
            await governor.start()
            stack.push_async_callback(governor.close)
        watcher = await stack.enter_async_context(
            watch_config(routes.base.path, routes.base, routes.apply, self._reload_interval, routes.changes)
        )
        if watcher is not None:
            self.state.extras["config_watcher"] = watcher
        self._resources = stack

    async def _stop(self) -> None:
        if self._api_build is not None:
            await asyncio.gather(self._api_build, return_exceptions=True)  # never leave the thread behind
        if self._resources is not None:
            await self._resources.aclose()
            self._resources = None
        self.state.upstream = None


def _upstream_origins(state: GatewayState) -> list[str]:
    """The origin of every model that goes through the pool (which uses no proxy), fallbacks and
    split members included; routes on the httpx transport honour the proxy variables themselves."""
    default = state.config.server.upstream_transport
    origins = []
    for entry in state.registry.list():
        for target in (*entry.plan.primaries, *entry.plan.fallbacks):
            if (target.transport or default) == "pool" and target.adapter.origin:
                origins.append(target.adapter.origin)
    return origins


def _warm_up(state: GatewayState) -> asyncio.Task[None]:
    """Start loading what adapters load by I/O (``Adapter.refresh``: Bedrock's AWS credentials) in
    the background: the first requests then find it ready, or wait for the same load. A failure is
    logged here and reported again, to the caller, by the request that needs it."""

    async def warm() -> None:
        refreshes = {}
        for entry in state.registry.list():
            for target in (*entry.plan.primaries, *entry.plan.fallbacks):
                if target.adapter.refresh is not None:
                    refreshes[id(target.adapter)] = (entry.name, target.adapter.refresh)
        results = await asyncio.gather(
            *(refresh() for _, refresh in refreshes.values()), return_exceptions=True
        )
        for (route, _), result in zip(refreshes.values(), results, strict=True):
            if isinstance(result, Exception):
                logger.warning("route '%s': %s", route, result)

    return asyncio.ensure_future(warm())


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def _freeze_heap(_: object = None) -> None:
    """Move everything built at start-up (modules, config, routes; later the FastAPI app) out of the
    garbage collector's sight: a full collection then walks only what requests allocate, which
    removes the tens-of-milliseconds pauses that stretched the c=64 latency tail."""
    gc.collect()
    gc.freeze()


def _with_header(send: Any, header: tuple[bytes, bytes]) -> Any:
    """``send`` with ``header`` added to the response head (a pure ASGI wrapper for the paths
    FastAPI answers)."""

    async def sending(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()), header]}
        await send(message)

    return sending


async def _send_metrics(state: GatewayState, send: Any, id_header: tuple[bytes, bytes]) -> None:
    body = state.metrics.render(entry.name for entry in state.registry.list()).encode()
    headers = [(b"content-type", _METRICS_TYPE), (b"content-length", str(len(body)).encode()), id_header]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _send_stats(
    state: GatewayState, scope: dict[str, Any], send: Any, id_header: tuple[bytes, bytes]
) -> None:
    """``gatewayctl top``'s snapshot (stats.py), for a caller with the ``query`` scope."""
    from gateway_server.stats import snapshot

    headers = [(b"content-type", b"application/json"), id_header]
    try:
        state.auth.authorize(scope["headers"], QUERY)
        status = 200
        body = orjson.dumps(snapshot(state.metrics, [entry.name for entry in state.registry.list()]))
    except GatewayError as exc:
        status, body = exc.status_code, error_body(exc, id_header[1].decode())
        headers += [(k.lower().encode(), v.encode()) for k, v in exc.headers().items()]
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def build_api(state: GatewayState) -> ASGIApp:
    """The FastAPI app for listing, admin and docs (and /health, /metrics in its OpenAPI), on ``state``."""
    # FastAPI's own /docs and /redoc load their scripts from a CDN; these pages are the same with
    # the assets (Swagger UI 5, ReDoc) shipped in fastapi-offline and served by the gateway, so
    # the docs render on a network without internet.
    from fastapi_offline import FastAPIOffline

    from gateway_server.api.errors import install_error_handlers
    from gateway_server.api.openapi import install_openapi
    from gateway_server.api.routes_crud import router as routes_router
    from gateway_server.api.usage import router as usage_router

    api = FastAPIOffline(
        static_url="/docs/assets",
        title="gatewayctl gateway",
        description="An LLM gateway compatible with the MLflow AI Gateway API and the OpenAI API.",
        version=_version(),
    )
    api.state.gateway = state
    install_error_handlers(api)
    api.include_router(routes_router)
    api.include_router(usage_router)
    install_openapi(api)
    return api


def create_app(
    config: GatewayConfig,
    *,
    pool: ConnectionPool | None = None,
    reload_interval: float | None = None,
    freeze_heap: bool = False,
) -> GatewayApp:
    """A fresh app for ``config``. Pass ``pool`` to share an upstream connection pool you own.

    With ``reload_interval`` (seconds), the lifespan watches ``config.path`` and hot-reloads it
    (``gateway_server/reload.py``); ``None`` serves ``config`` as given.
    """
    return GatewayApp(
        GatewayState.from_config(config),
        pool=pool,
        reload_interval=reload_interval,
        freeze_heap=freeze_heap,
    )


def create_app_from_path(path: str, *, reload_interval: float | None = RELOAD_INTERVAL) -> GatewayApp:
    return create_app(load_config(path), reload_interval=reload_interval)


def create_app_from_env() -> GatewayApp:
    """Factory for uvicorn workers: the config path comes from ``GATEWAYCTL_CONFIG``."""
    path = os.environ.get(CONFIG_ENV)
    if not path:
        raise RuntimeError(f"{CONFIG_ENV} is not set; it must name the gateway's config file")
    interval = float(os.environ.get(RELOAD_INTERVAL_ENV, RELOAD_INTERVAL))
    app = create_app_from_path(path, reload_interval=interval or None)
    app.freeze_heap = True  # a serving worker process
    app.state.access_log = AccessLog.from_env()
    app.state.auth.allow_unauthenticated_admin = os.environ.get(ALLOW_UNAUTHENTICATED_ADMIN_ENV) == "1"
    return app


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("gatewayctl")
    except Exception:  # not installed (running from a checkout)
        return "0+unknown"
