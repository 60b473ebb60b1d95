"""Route aliases: other model names the /v1/* paths accept, shown by /v1/models and route listings;
collisions refused at load time and at run time; gateway keys in x-api-key."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from gateway_server.app import create_app
from gateway_server.config import load_config, parse_config
from gateway_server.errors import ConfigError, InvalidRequestError
from gateway_server.runtime import RouteTable
from gateway_server.testing import serve_in_thread

CONFIG = """
routes:
  - name: chat
    route_type: llm/v1/chat
    aliases: [claude-sonnet-4-5, gpt-5]
    model: {provider: fake, name: fake-chat}
  - name: embed
    route_type: llm/v1/embeddings
    model: {provider: fake, name: fake-embed}
auth:
  keys:
    - {name: agent, key: k-agent, scopes: [query]}
"""


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with (
        serve_in_thread(create_app(parse_config(CONFIG))) as server,
        httpx.Client(base_url=server.url, timeout=10) as http,
    ):
        yield http


def test_alias_is_accepted_as_model_on_v1_paths(client: httpx.Client) -> None:
    hello = {"messages": [{"role": "user", "content": "hi"}]}
    headers = {"authorization": "Bearer k-agent"}
    for model in ("chat", "claude-sonnet-4-5", "gpt-5"):
        response = client.post("/v1/chat/completions", json={**hello, "model": model}, headers=headers)
        assert response.status_code == 200, response.text
        response = client.post(
            "/v1/messages", json={**hello, "model": model, "max_tokens": 5}, headers=headers
        )
        assert response.status_code == 200, response.text
    # An alias names a route only on /v1/*: /gateway/<alias>/invocations is not a route.
    assert client.post("/gateway/gpt-5/invocations", json=hello, headers=headers).status_code == 404


def test_x_api_key_is_a_gateway_key(client: httpx.Client) -> None:
    body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
    assert client.post("/v1/chat/completions", json=body, headers={"x-api-key": "k-agent"}).status_code == 200
    denied = client.post("/v1/messages", json={**body, "max_tokens": 5}, headers={"x-api-key": "nope"})
    assert denied.status_code == 401
    assert denied.json() == {
        "type": "error",
        "error": {"type": "authentication_error", "message": denied.json()["error"]["message"]},
        "request_id": denied.headers["x-request-id"],  # where Anthropic's own errors have theirs
    }
    assert "nope" not in denied.text


def test_models_and_routes_show_aliases(client: httpx.Client) -> None:
    headers = {"authorization": "Bearer k-agent"}
    models = client.get("/v1/models", headers=headers).json()["data"]
    ids = {model["id"]: model for model in models}
    assert ids["claude-sonnet-4-5"]["alias_of"] == "chat" and ids["gpt-5"]["alias_of"] == "chat"
    assert "alias_of" not in ids["chat"]
    route = client.get("/api/2.0/gateway/routes/chat", headers=headers).json()
    assert route["aliases"] == ["claude-sonnet-4-5", "gpt-5"]
    assert client.get("/api/2.0/endpoints/chat", headers=headers).json()["aliases"] == [
        "claude-sonnet-4-5",
        "gpt-5",
    ]
    assert "aliases" not in client.get("/api/2.0/gateway/routes/embed", headers=headers).json()


def test_alias_collisions_are_config_errors() -> None:
    text = """
routes:
  - {name: a, route_type: llm/v1/chat, aliases: [x, b], model: {provider: fake, name: m}}
  - {name: b, route_type: llm/v1/chat, aliases: [x], model: {provider: fake, name: m}}
  - {name: c, route_type: llm/v1/chat, aliases: [c, y, y], model: {provider: fake, name: m}}
"""
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "gw.yaml")
    message = str(caught.value)
    assert "gw.yaml:3: route 'a': aliases[1]: alias 'b' of route 'a' is the name of another route" in message
    assert (
        "gw.yaml:4: route 'b': aliases[0]: alias 'x' of route 'b' is already an alias of route 'a'" in message
    )
    assert "gw.yaml:5: route 'c': aliases: aliases must be unique; repeated: y" in message
    assert "alias 'c' is the route's own name" in message


def test_run_time_routes_cannot_take_a_used_name(tmp_config) -> None:
    table = RouteTable(load_config(tmp_config(CONFIG)))
    index = table.index
    assert index.resolve("gpt-5").name == "chat" and index.resolve("chat").name == "chat"
    assert index.resolve("nope") is None and index.get("gpt-5") is None

    def create(body: dict) -> None:
        asyncio.run(
            table.create({"route_type": "llm/v1/chat", "model": {"provider": "fake", "name": "m"}, **body})
        )

    with pytest.raises(
        InvalidRequestError, match="'gpt-5' of route 'new' is already an alias of route 'chat'"
    ):
        create({"name": "new", "aliases": ["gpt-5"]})
    with pytest.raises(
        InvalidRequestError, match="alias 'gpt-5' of route 'chat' is the name of another route"
    ):
        create({"name": "gpt-5"})
    create({"name": "other", "aliases": ["claude-opus-4-1"]})
    assert table.index.resolve("claude-opus-4-1").name == "other"
    asyncio.run(table.delete("chat"))
    assert table.index.resolve("gpt-5") is None  # the aliases go with their route
