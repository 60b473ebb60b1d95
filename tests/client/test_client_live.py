"""GatewayClient and AsyncGatewayClient against the real gateway app on 127.0.0.1 (offline ``fake`` provider)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway_server.app import create_app
from gateway_server.config import load_config
from gateway_server.testing import serve_in_thread
from gatewayctl import (
    AsyncGatewayClient,
    AuthenticationError,
    ConfigError,
    GatewayClient,
    PermissionDeniedError,
    RouteExistsError,
    RouteNotFoundError,
    RouteType,
)

ADMIN_KEY = "gk-admin-live-test"
QUERY_KEY = "gk-query-live-test"
CONFIG = """\
routes:
  - name: chat
    route_type: llm/v1/chat
    model: {provider: fake, name: fake-chat, config: {}}
  - name: completions
    route_type: llm/v1/completions
    model: {provider: fake, name: fake-completions, config: {}}
  - name: embeddings
    route_type: llm/v1/embeddings
    model: {provider: fake, name: fake-embeddings, config: {}}
auth:
  keys:
    - {name: ops, key: $LIVE_TEST_ADMIN_KEY, scopes: [query, admin]}
    - {name: app, key: $LIVE_TEST_QUERY_KEY, scopes: [query]}
"""
CHAT = {"messages": [{"role": "user", "content": "hello gateway"}]}


@pytest.fixture
def gateway_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh gateway per test (route changes are saved to its own config file)."""
    monkeypatch.setenv("LIVE_TEST_ADMIN_KEY", ADMIN_KEY)
    monkeypatch.setenv("LIVE_TEST_QUERY_KEY", QUERY_KEY)
    path = tmp_path / "gateway.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    with serve_in_thread(create_app(load_config(path))) as server:
        yield server.url


def test_routes_queries_and_pages_on_the_real_server(gateway_url: str) -> None:
    with GatewayClient(gateway_url, api_key=QUERY_KEY) as client:
        route = client.get_route("chat")
        assert route.route_type is RouteType.CHAT
        assert route.route_url == f"{gateway_url}/gateway/chat/invocations"

        first = client.search_routes(max_results=2)
        assert [r.name for r in first] == ["chat", "completions"]
        assert first.token is not None
        second = client.search_routes(first.token, max_results=2)
        assert [r.name for r in second] == ["embeddings"]
        assert second.token is None
        assert [r.name for r in client.list_routes()] == ["chat", "completions", "embeddings"]

        answer = client.query("chat", CHAT)
        assert answer["candidates"][0]["message"]["content"].endswith("hello gateway")
        assert answer["metadata"]["route_type"] == "llm/v1/chat"
        assert client.query("completions", {"prompt": "p"})["candidates"][0]["text"].endswith("p")
        assert len(client.query("embeddings", {"text": ["a", "b"]})["embeddings"]) == 2


def test_stream_on_the_real_server(gateway_url: str) -> None:
    with GatewayClient(gateway_url, api_key=QUERY_KEY) as client:
        with client.query("chat", CHAT, stream=True) as chunks:
            parts = [chunk["choices"][0]["delta"].get("content", "") for chunk in chunks]
        assert "".join(parts).endswith("hello gateway")
        assert len(parts) > 2
        # stopping early leaves the client usable (the connection is closed, not wedged)
        for _chunk in client.query("chat", CHAT, stream=True):
            break
        assert client.get_route("chat").name == "chat"


def test_server_errors_arrive_typed_with_the_server_message(gateway_url: str) -> None:
    with GatewayClient(gateway_url, api_key=QUERY_KEY) as client:
        with pytest.raises(RouteNotFoundError, match="The route 'nope' is not present"):
            client.get_route("nope")
        with pytest.raises(PermissionDeniedError):
            client.delete_route("chat")
    with GatewayClient(gateway_url) as anonymous, pytest.raises(AuthenticationError):
        anonymous.query("chat", CHAT)


def test_create_and_delete_routes_with_an_admin_key(gateway_url: str) -> None:
    model = {"name": "fake-chat", "provider": "fake", "config": {}}
    with GatewayClient(gateway_url, api_key=ADMIN_KEY) as client:
        created = client.create_route("extra", "llm/v1/chat", model)
        assert created.route_url == f"{gateway_url}/gateway/extra/invocations"
        assert client.query("extra", CHAT)["candidates"][0]["message"]["content"].endswith("hello gateway")
        with pytest.raises(RouteExistsError):
            client.create_route("extra", "llm/v1/chat", model)
        with pytest.raises(ConfigError, match="provider"):
            client.create_route("broken", "llm/v1/chat", {"name": "m", "provider": "no-such-provider"})
        client.delete_route("extra")
        with pytest.raises(RouteNotFoundError):
            client.get_route("extra")


def test_async_client_on_the_real_server(gateway_url: str) -> None:
    async def scenario() -> tuple[list[str], str, str]:
        async with AsyncGatewayClient(gateway_url, api_key=QUERY_KEY) as client:
            names = [route.name for route in await client.list_routes()]
            answer = await client.query("completions", {"prompt": "async"})
            async with await client.query("chat", CHAT, stream=True) as chunks:
                streamed = "".join(
                    [chunk["choices"][0]["delta"].get("content", "") async for chunk in chunks]
                )
            return names, answer["candidates"][0]["text"], streamed

    names, text, streamed = asyncio.run(scenario())
    assert names == ["chat", "completions", "embeddings"]
    assert text.endswith("async")
    assert streamed.endswith("hello gateway")
