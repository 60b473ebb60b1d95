"""Read routes (seed era ``/api/2.0/gateway/routes/``) and endpoints (MLflow 2.9+), paged like MLflow:
the page token is base64 of ``{"index": N}``; a bad token is a 400, not MLflow's 500."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query
from fastapi.responses import PlainTextResponse

from gateway_server.api import paths
from gateway_server.api.deps import get_state
from gateway_server.app_state import GatewayState
from gateway_server.errors import InvalidRequestError, RouteNotFoundError

__all__ = ["router"]

MAX_PAGE = 3000  # MLflow's fixed page size

router = APIRouter()

State = Annotated[GatewayState, Depends(get_state)]
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


@router.get(paths.ROUTES, summary="List routes (seed-era shape)")
async def list_routes(
    state: State, page_token: PageToken = None, max_results: MaxResults = MAX_PAGE
) -> dict[str, Any]:
    return _page([entry.public for entry in state.registry.list()], "routes", page_token, max_results)


@router.get(paths.ROUTE, summary="Get one route (seed-era shape)")
async def get_route(name: str, state: State) -> dict[str, Any]:
    entry = state.registry.get(name)
    if entry is None:
        raise RouteNotFoundError(name)
    return entry.public


@router.get(paths.ENDPOINTS, summary="List endpoints (MLflow 2.9+ shape)")
async def list_endpoints(
    state: State, page_token: PageToken = None, max_results: MaxResults = MAX_PAGE
) -> dict[str, Any]:
    return _page([entry.endpoint for entry in state.registry.list()], "endpoints", page_token, max_results)


@router.get(paths.ENDPOINT, summary="Get one endpoint (MLflow 2.9+ shape)")
async def get_endpoint(name: str, state: State) -> dict[str, Any]:
    entry = state.registry.get(name)
    if entry is None:
        raise RouteNotFoundError(name, noun="endpoint")
    return entry.endpoint


@router.get(paths.V1_MODELS, summary="OpenAI-compatible model list: one model per route")
async def list_models(state: State) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [
            {"id": entry.name, "object": "model", "created": 0, "owned_by": entry.adapter.name}
            for entry in state.registry.list()
        ],
    }


@router.get(paths.METRICS, summary="Prometheus metrics", response_class=PlainTextResponse)
async def metrics(state: State) -> PlainTextResponse:
    return PlainTextResponse(state.metrics.render(), media_type="text/plain; version=0.0.4")


@router.get(paths.HEALTH, summary="Liveness")
async def health() -> dict[str, str]:
    return {"status": "OK"}
