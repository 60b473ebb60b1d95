"""Build the gateway's ASGI application from a validated config.

The app is two layers: :class:`GatewayApp` answers the invocation paths itself (the hot path,
``api/invocations.py``) and hands everything else to a FastAPI app (route listing, health, docs,
OpenAPI, admin). The FastAPI lifespan owns the one pooled upstream session.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from fastapi import FastAPI

from gateway_server.api.errors import install_error_handlers
from gateway_server.api.invocations import handle_invocation, match_invocation
from gateway_server.api.openapi import install_openapi
from gateway_server.api.routes_crud import router as routes_router
from gateway_server.app_state import GatewayState
from gateway_server.auth import ALLOW_UNAUTHENTICATED_ADMIN_ENV
from gateway_server.config import GatewayConfig, load_config
from gateway_server.providers._http import UpstreamClient, create_session
from gateway_server.reload import RELOAD_INTERVAL, watch_config

__all__ = ["CONFIG_ENV", "GatewayApp", "create_app", "create_app_from_env", "create_app_from_path"]

CONFIG_ENV = "GATEWAYCTL_CONFIG"
RELOAD_INTERVAL_ENV = "GATEWAYCTL_RELOAD_INTERVAL"  # seconds; 0 turns hot reload off


class GatewayApp:
    """ASGI entry point: invocations go straight to the hot handler, the rest to FastAPI."""

    def __init__(self, state: GatewayState, api: FastAPI) -> None:
        self.state = state
        self.api = api

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            invocation = match_invocation(scope["path"])
            if invocation is not None:
                await handle_invocation(self.state, invocation, scope, receive, send)
                return
        await self.api(scope, receive, send)


def create_app(
    config: GatewayConfig,
    *,
    session: aiohttp.ClientSession | None = None,
    reload_interval: float | None = None,
) -> GatewayApp:
    """A fresh app for ``config``. Pass ``session`` to share an upstream session you own.

    With ``reload_interval`` (seconds), the lifespan watches ``config.path`` and hot-reloads it
    (``gateway_server/reload.py``); ``None`` serves ``config`` as given.
    """
    state = GatewayState.from_config(config)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        own = session is None
        upstream_session = create_session() if own else session
        state.upstream = UpstreamClient(upstream_session)
        try:
            async with watch_config(state, reload_interval):
                yield
        finally:
            state.upstream = None
            if own:
                await upstream_session.close()

    api = FastAPI(
        title="gatewayctl gateway",
        description="An LLM gateway compatible with the MLflow AI Gateway API and the OpenAI API.",
        version=_version(),
        lifespan=lifespan,
    )
    api.state.gateway = state
    install_error_handlers(api)
    api.include_router(routes_router)
    install_openapi(api)
    return GatewayApp(state, api)


def create_app_from_path(path: str, *, reload_interval: float | None = RELOAD_INTERVAL) -> GatewayApp:
    return create_app(load_config(path), reload_interval=reload_interval)


def create_app_from_env() -> GatewayApp:
    """Factory for uvicorn workers: the config path comes from ``GATEWAYCTL_CONFIG``."""
    path = os.environ.get(CONFIG_ENV)
    if not path:
        raise RuntimeError(f"{CONFIG_ENV} is not set; it must name the gateway's config file")
    interval = float(os.environ.get(RELOAD_INTERVAL_ENV, RELOAD_INTERVAL))
    app = create_app_from_path(path, reload_interval=interval or None)
    app.state.auth.allow_unauthenticated_admin = os.environ.get(ALLOW_UNAUTHENTICATED_ADMIN_ENV) == "1"
    return app


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("gatewayctl")
    except Exception:  # not installed (running from a checkout)
        return "0+unknown"
