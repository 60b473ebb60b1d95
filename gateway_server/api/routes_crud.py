"""Routes (seed era ``/api/2.0/gateway/routes/``) and endpoints (MLflow 2.9+): list, get, create, delete.

Listing is paged like MLflow: the page token is base64 of ``{"index": N}``; a bad token is a 400,
not MLflow's 500. Listing needs a key with the ``query`` scope when the config has ``auth:`` keys
(the names and models of routes are part of what a key protects); create and delete need
``admin``. This module is only the HTTP side: the use cases (validation, locking, 404/409,
persist-then-serve, to the config file or with ``server.shared_state`` to Redis) are
``RouteTable.create`` and ``RouteTable.delete`` in ``runtime/table.py``.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.responses import PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from gateway_server.api import paths
from gateway_server.api.deps import get_state
from gateway_server.app_state import GatewayState
from gateway_server.auth import ADMIN, QUERY
from gateway_server.errors import InvalidRequestError, RouteNotFoundError

__all__ = ["router"]

MAX_PAGE = 3000  # MLflow's fixed page size

router = APIRouter()

# Declared for the OpenAPI document ("Authorize" in /docs); the check itself is auth.KeyTable's.
_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="GatewayKey",
    description="A gateway API key from the config's auth.keys, sent as 'Authorization: Bearer <key>'.",
)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def _require_query(request: Request, _: Credentials) -> str | None:
    return request.app.state.gateway.auth.authorize(request.scope["headers"], QUERY)


def _require_admin(request: Request, _: Credentials) -> str | None:
    return request.app.state.gateway.auth.authorize(request.scope["headers"], ADMIN)


State = Annotated[GatewayState, Depends(get_state)]
QueryKey = Depends(_require_query)
AdminKey = Depends(_require_admin)
# The admin key's name (None on a gateway without keys): the change's log line says who made it.
AdminKeyName = Annotated[str | None, Depends(_require_admin)]
RouteBody = Annotated[
    dict[str, Any],
    Body(
        description="A route exactly as in the config file's routes: list (name, route_type or "
        "endpoint_type, model: {name, provider, config}, and the optional extensions).",
        examples=[
            {
                "name": "chat",
                "route_type": "llm/v1/chat",
                "model": {
                    "name": "gpt-4o-mini",
                    "provider": "openai",
                    "config": {"openai_api_key": "$OPENAI_API_KEY"},
                },
            }
        ],
    ),
]
PageToken = Annotated[str | None, Query(description="next_page_token of the previous page")]
MaxResults = Annotated[int, Query(ge=1, le=MAX_PAGE, description="page size")]


def _decode_token(token: str | None) -> int:
    if not token:
        return 0
    try:
        index = orjson.loads(base64.urlsafe_b64decode(token.encode() + b"=" * (-len(token) % 4)))["index"]
    except (binascii.Error, ValueError, TypeError, KeyError, orjson.JSONDecodeError):
        index = None
    if not isinstance(index, int) or index < 0:
        raise InvalidRequestError(
            "Invalid page_token: pass the next_page_token of a previous page unchanged."
        )
    return index


def _encode_token(index: int) -> str:
    return base64.urlsafe_b64encode(orjson.dumps({"index": index})).decode()


def _page(items: list[dict[str, Any]], key: str, token: str | None, size: int) -> dict[str, Any]:
    start = _decode_token(token)
    page: dict[str, Any] = {key: items[start : start + size]}
    if start + size < len(items):
        page["next_page_token"] = _encode_token(start + size)
    return page


@router.get(paths.ROUTES, dependencies=[QueryKey], summary="List routes (seed-era shape)")
async def list_routes(
    state: State, page_token: PageToken = None, max_results: MaxResults = MAX_PAGE
) -> dict[str, Any]:
    return _page([entry.public for entry in state.registry.list()], "routes", page_token, max_results)


@router.get(paths.ROUTE, dependencies=[QueryKey], summary="Get one route (seed-era shape)")
async def get_route(name: str, state: State) -> dict[str, Any]:
    entry = state.registry.get(name)
    if entry is None:
        raise RouteNotFoundError(name)
    return entry.public


@router.get(paths.ENDPOINTS, dependencies=[QueryKey], summary="List endpoints (MLflow 2.9+ shape)")
async def list_endpoints(
    state: State, page_token: PageToken = None, max_results: MaxResults = MAX_PAGE
) -> dict[str, Any]:
    return _page([entry.endpoint for entry in state.registry.list()], "endpoints", page_token, max_results)


@router.get(paths.ENDPOINT, dependencies=[QueryKey], summary="Get one endpoint (MLflow 2.9+ shape)")
async def get_endpoint(name: str, state: State) -> dict[str, Any]:
    entry = state.registry.get(name)
    if entry is None:
        raise RouteNotFoundError(name, noun="endpoint")
    return entry.endpoint


@router.get(
    paths.V1_MODELS, dependencies=[QueryKey], summary="OpenAI-compatible model list: one model per route"
)
async def list_models(state: State) -> dict[str, Any]:
    data = []
    for entry in state.registry.list():
        data.append({"id": entry.name, "object": "model", "created": 0, "owned_by": entry.adapter.name})
        # An alias is a model name the /v1/* paths accept too (agents pick vendor names from here).
        data.extend(
            {
                "id": alias,
                "object": "model",
                "created": 0,
                "owned_by": entry.adapter.name,
                "alias_of": entry.name,
            }
            for alias in entry.config.aliases
        )
    return {"object": "list", "data": data}


@router.post(paths.ROUTES, summary="Create a route (admin scope); saved to the config file")
async def create_route(body: RouteBody, state: State, key: AdminKeyName) -> dict[str, Any]:
    return (await state.routes.create(body, key=key)).public


@router.delete(paths.ROUTE, summary="Delete a route (admin scope); saved to the config file")
async def delete_route(name: str, state: State, key: AdminKeyName) -> dict[str, Any]:
    await state.routes.delete(name, "route", key=key)
    return {}


@router.post(paths.ENDPOINTS, summary="Create an endpoint (MLflow 2.9+ shape; admin scope)")
async def create_endpoint(body: RouteBody, state: State, key: AdminKeyName) -> dict[str, Any]:
    return (await state.routes.create(body, key=key)).endpoint


@router.delete(paths.ENDPOINT, summary="Delete an endpoint (MLflow 2.9+ shape; admin scope)")
async def delete_endpoint(name: str, state: State, key: AdminKeyName) -> dict[str, Any]:
    await state.routes.delete(name, "endpoint", key=key)
    return {}


@router.get(paths.METRICS, summary="Prometheus metrics", response_class=PlainTextResponse)
async def metrics(state: State) -> PlainTextResponse:
    body = state.metrics.render(entry.name for entry in state.registry.list())
    return PlainTextResponse(body, media_type="text/plain; version=0.0.4")


@router.get(paths.HEALTH, summary="Liveness")
async def health() -> dict[str, str]:
    return {"status": "OK"}
