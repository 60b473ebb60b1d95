"""Create and delete routes at run time: validated like the file, saved to it, still there after a restart."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from gateway_server.app import create_app
from gateway_server.config import load_config, parse_config
from gateway_server.testing import serve_in_thread

ADMIN_KEY = "gk-admin-SENTINEL-3333"
OPENAI_KEY = "sk-openai-SENTINEL-4444"

CONFIG = """\
# team gateway: comments and order survive route changes
routes:
  - name: chat   # the web app's route
    route_type: llm/v1/chat
    model: {provider: fake, name: fake-chat}
auth:
  keys:
    - {name: ops, key: $GW_TEST_ADMIN_KEY, scopes: [query, admin]}
server:
  max_request_bytes: 65536
"""

ROUTES = "/api/2.0/gateway/routes/"
ENDPOINTS = "/api/2.0/endpoints/"
AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}
CHAT = {"messages": [{"role": "user", "content": "Hello"}]}


def _new(name: str = "fast", provider: str = "fake") -> dict:
    return {"name": name, "route_type": "llm/v1/chat", "model": {"name": "fake-chat", "provider": provider}}


@pytest.fixture(autouse=True)
def _keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GW_TEST_ADMIN_KEY", ADMIN_KEY)
    monkeypatch.setenv("GW_TEST_OPENAI_KEY", OPENAI_KEY)


@pytest.fixture
def config_path(tmp_config: Callable[..., Path]) -> Path:
    return tmp_config(CONFIG)


def _serve(path: Path) -> Iterator[httpx.Client]:
    app = create_app(load_config(path))
    with (
        serve_in_thread(app) as server,
        httpx.Client(base_url=server.url, timeout=10, headers=AUTH) as client,
    ):
        yield client


@pytest.fixture
def gateway(config_path: Path) -> Iterator[httpx.Client]:
    yield from _serve(config_path)


def test_admin_create_route_serves_lists_and_saves_it(gateway: httpx.Client, config_path: Path) -> None:
    created = gateway.post(ROUTES, json=_new())
    assert created.status_code == 200, created.text
    assert created.json() == {
        "name": "fast",
        "route_type": "llm/v1/chat",
        "model": {"name": "fake-chat", "provider": "fake"},
        "route_url": "/gateway/fast/invocations",
    }
    assert gateway.get(f"{ROUTES}fast").json() == created.json()
    assert [route["name"] for route in gateway.get(ROUTES).json()["routes"]] == ["chat", "fast"]
    answer = gateway.post("/gateway/fast/invocations", json=CHAT)
    assert answer.status_code == 200, answer.text
    text = config_path.read_text()
    assert text.startswith(CONFIG.split("auth:")[0])  # the comments and the old route are untouched
    assert "  - name: fast\n    route_type: llm/v1/chat\n" in text
    assert "server:\n  max_request_bytes: 65536\n" in text


def test_admin_delete_route_stops_serving_and_saves_it(gateway: httpx.Client, config_path: Path) -> None:
    response = gateway.delete(f"{ROUTES}chat")
    assert response.status_code == 200, response.text
    assert gateway.get(f"{ROUTES}chat").status_code == 404
    assert gateway.post("/gateway/chat/invocations", json=CHAT).status_code == 404
    assert "name: chat" not in config_path.read_text()
    assert load_config(config_path).routes == []


def test_admin_credential_reference_is_saved_as_given(tmp_config: Callable[..., Path]) -> None:
    path = tmp_config(
        CONFIG.replace(
            "routes:\n",
            "credentials:\n  openai-prod: {provider: openai, config: {openai_api_key: $GW_TEST_OPENAI_KEY}}\nroutes:\n",
        )
    )
    route = {
        "name": "gpt",
        "route_type": "llm/v1/chat",
        "model": {"name": "gpt-4o-mini", "provider": "openai", "credentials": "openai-prod"},
    }
    for gateway in _serve(path):
        response = gateway.post(ROUTES, json=route)
        assert response.status_code == 200, response.text
        assert OPENAI_KEY not in response.text
    text = path.read_text()
    assert "credentials: openai-prod" in text
    assert OPENAI_KEY not in text
    assert load_config(path).routes[-1].model.config.openai_api_key.get() == OPENAI_KEY  # type: ignore[union-attr]


def test_admin_invalid_route_lists_every_issue_like_the_file(
    gateway: httpx.Client, config_path: Path
) -> None:
    before = config_path.read_text()
    bad = {
        "name": "bad name",
        "route_type": "llm/v1/chatt",
        "model": {"provider": "openai", "name": "m", "config": {"openai_api_key": "$GW_TEST_UNSET"}},
        "timeout": -1,
    }
    response = gateway.post(ROUTES, json=bad)
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_config"
    message = response.json()["error"]["message"]
    for expected in ("not a valid route name", "route_type", "cannot use the server's environment", "timeout"):
        assert expected in message
    # the same words as the config file loader uses
    from gateway_server.config import parse_route
    from gateway_server.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        parse_route(bad)
    assert message == info.value.message
    assert config_path.read_text() == before
    unknown_key = gateway.post(ROUTES, json={**_new(), "fallback": []})
    assert unknown_key.status_code == 400
    assert "unknown key 'fallback'; did you mean 'fallbacks'?" in unknown_key.json()["error"]["message"]
    assert gateway.post(ROUTES, json=["not", "an", "object"]).status_code == 422


def test_admin_duplicate_is_409_unknown_delete_is_404(gateway: httpx.Client) -> None:
    duplicate = gateway.post(ROUTES, json=_new("chat"))
    assert duplicate.status_code == 409
    assert duplicate.json()["error"]["message"].startswith("A route named 'chat' already exists")
    missing = gateway.delete(f"{ROUTES}nope")
    assert missing.status_code == 404
    assert "'nope'" in missing.json()["error"]["message"]


def test_admin_endpoints_spelling(gateway: httpx.Client, config_path: Path) -> None:
    body = {"name": "ep", "endpoint_type": "llm/v1/chat", "model": {"name": "fake-chat", "provider": "fake"}}
    created = gateway.post(ENDPOINTS, json=body)
    assert created.status_code == 200, created.text
    assert created.json()["endpoint_type"] == "llm/v1/chat"
    assert created.json()["endpoint_url"] == "/endpoints/ep/invocations"
    assert "endpoint_type: llm/v1/chat" in config_path.read_text()
    assert gateway.post("/endpoints/ep/invocations", json=CHAT).status_code == 200
    assert gateway.delete(f"{ENDPOINTS}ep").status_code == 200
    missing = gateway.delete(f"{ENDPOINTS}ep")
    assert missing.status_code == 404
    assert "endpoint 'ep'" in missing.json()["error"]["message"]


def test_admin_changes_survive_a_restart(config_path: Path) -> None:
    for client in _serve(config_path):
        assert client.post(ROUTES, json=_new("kept")).status_code == 200
        assert client.delete(f"{ROUTES}chat").status_code == 200
    for client in _serve(config_path):  # a new app from the same file: what a restarted server does
        names = [route["name"] for route in client.get(ROUTES).json()["routes"]]
        assert names == ["kept"]
        assert client.post("/gateway/kept/invocations", json=CHAT).status_code == 200


def test_admin_refused_without_a_config_file() -> None:
    config = parse_config(CONFIG)  # no path: nowhere to save a change
    with (
        serve_in_thread(create_app(config)) as server,
        httpx.Client(base_url=server.url, timeout=10, headers=AUTH) as client,
    ):
        refused = client.post(ROUTES, json=_new())
        assert refused.status_code == 409
        assert refused.json()["error"]["type"] == "config_not_persistable"
        assert "cannot be persisted" in refused.json()["error"]["message"]
        assert client.delete(f"{ROUTES}chat").status_code == 409
        assert client.get(f"{ROUTES}fast").status_code == 404


def test_admin_without_auth_needs_the_flag(tmp_config: Callable[..., Path]) -> None:
    path = tmp_config(
        CONFIG.replace(
            "auth:\n  keys:\n    - {name: ops, key: $GW_TEST_ADMIN_KEY, scopes: [query, admin]}\n", ""
        )
    )
    assert load_config(path).auth is None
    for client in _serve(path):
        refused = client.post(ROUTES, json=_new())
        assert refused.status_code == 403
    app = create_app(load_config(path))
    app.state.auth.allow_unauthenticated_admin = True  # what `serve --allow-unauthenticated-admin` does
    with serve_in_thread(app) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        assert client.post(ROUTES, json=_new()).status_code == 200
        assert client.delete(f"{ROUTES}fast").status_code == 200


def test_admin_flag_warning_is_printed(capsys: pytest.CaptureFixture[str]) -> None:
    from gateway_server.runner import _warn_unauthenticated_admin

    _warn_unauthenticated_admin(has_keys=False)
    assert "WARNING: --allow-unauthenticated-admin" in capsys.readouterr().err
    _warn_unauthenticated_admin(has_keys=True)
    assert "has no effect" in capsys.readouterr().err
