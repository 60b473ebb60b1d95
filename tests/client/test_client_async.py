"""AsyncGatewayClient: the same wire contract and errors as GatewayClient."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from mock_gateway import BASE, Recorder, envelope, route_json

from gatewayctl import AsyncGatewayClient, GatewayUnreachableError, PagedList, RouteNotFoundError


def run(recorder: Recorder, action: Any, **kwargs: Any) -> Any:
    async def scenario() -> Any:
        async with AsyncGatewayClient(BASE, transport=httpx.MockTransport(recorder), **kwargs) as client:
            return await action(client)

    return asyncio.run(scenario())


def test_async_get_route_and_search_routes() -> None:
    recorder = Recorder().queue(
        httpx.Response(200, json=route_json("chat")),
        httpx.Response(200, json={"routes": [route_json("a")], "next_page_token": "n"}),
    )

    async def action(client: AsyncGatewayClient) -> Any:
        return await client.get_route("chat"), await client.search_routes(page_token="p")

    route, page = run(recorder, action, api_key="k")
    assert route.route_url == f"{BASE}/gateway/chat/invocations"
    assert isinstance(page, PagedList)
    assert page.token == "n"
    assert str(recorder.requests[0].url) == f"{BASE}/api/2.0/gateway/routes/chat"
    assert recorder.requests[1].url.params["page_token"] == "p"
    assert {request.headers["authorization"] for request in recorder.requests} == {"Bearer k"}


def test_async_list_routes_query_create_delete() -> None:
    pages = {None: {"routes": [route_json("a")], "next_page_token": "2"}, "2": {"routes": [route_json("b")]}}

    def reply(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json=pages[request.url.params.get("page_token")])
        if request.method == "DELETE":
            return httpx.Response(204)
        if request.url.path == "/gateway/a/invocations":
            return httpx.Response(200, json={"embeddings": [[0.5]]})
        return httpx.Response(200, json=route_json("c"))

    recorder = Recorder(reply)

    async def action(client: AsyncGatewayClient) -> Any:
        routes = await client.list_routes()
        answer = await client.query("a", {"text": "x"})
        created = await client.create_route("c", "llm/v1/chat", {"name": "m", "provider": "fake"})
        deleted = await client.delete_route("c")
        return routes, answer, created, deleted

    routes, answer, created, deleted = run(recorder, action)
    assert [route.name for route in routes] == ["a", "b"]
    assert answer == {"embeddings": [[0.5]]}
    assert created.name == "c"
    assert deleted is None
    assert [request.method for request in recorder.requests] == ["GET", "GET", "POST", "POST", "DELETE"]


def test_async_errors_are_typed_and_post_is_not_retried() -> None:
    recorder = Recorder().queue(envelope(404, "no route 'x'", "not_found_error"), httpx.ReadError("reset"))

    async def action(client: AsyncGatewayClient) -> None:
        with pytest.raises(RouteNotFoundError, match="no route 'x'"):
            await client.get_route("x")
        with pytest.raises(GatewayUnreachableError, match="may already have reached the provider"):
            await client.query("x", {"prompt": "p"})

    run(recorder, action)
    assert len(recorder.requests) == 2
