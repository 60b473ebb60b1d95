"""Gateway API keys on a served app: invocations and listing need `query`, route changes `admin`."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from gateway_server.app import create_app
from gateway_server.config import load_config
from gateway_server.testing import serve_in_thread

QUERY_KEY = "gk-query-SENTINEL-1111"
ADMIN_KEY = "gk-admin-SENTINEL-2222"

CONFIG = f"""\
routes:
  - name: chat
    route_type: llm/v1/chat
    model: {{provider: fake, name: fake-chat}}
  - name: embeddings
    route_type: llm/v1/embeddings
    model: {{provider: fake, name: fake-embeddings}}
auth:
  keys:
    - {{name: ci-bot, key: $GW_TEST_QUERY_KEY, scopes: [query]}}
    - {{name: ops, key_sha256: {hashlib.sha256(ADMIN_KEY.encode()).hexdigest()}, scopes: [query, admin]}}
"""

CHAT = {"messages": [{"role": "user", "content": "Hello"}]}
INVOCATIONS = [
    ("/gateway/chat/invocations", CHAT),
    ("/endpoints/chat/invocations", CHAT),
    ("/v1/chat/completions", {**CHAT, "model": "chat"}),
    ("/v1/embeddings", {"input": "hi", "model": "embeddings"}),
]
LISTINGS = [
    "/api/2.0/gateway/routes/",
    "/api/2.0/gateway/routes/chat",
    "/api/2.0/endpoints/",
    "/api/2.0/endpoints/chat",
    "/v1/models",
]


@pytest.fixture
def gateway(tmp_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch) -> Iterator[httpx.Client]:
    monkeypatch.setenv("GW_TEST_QUERY_KEY", QUERY_KEY)
    app = create_app(load_config(tmp_config(CONFIG)))
    with serve_in_thread(app) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        yield client


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _assert_envelope(response: httpx.Response, status: int, error_type: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["type"] == error_type
    assert body["detail"] == body["error"]["message"]
    for key in (QUERY_KEY, ADMIN_KEY):
        assert key not in response.text


@pytest.mark.parametrize(("path", "body"), INVOCATIONS)
def test_auth_invocation_needs_a_key(gateway: httpx.Client, path: str, body: dict) -> None:
    missing = gateway.post(path, json=body)
    _assert_envelope(missing, 401, "authentication_error")
    assert missing.headers["www-authenticate"] == "Bearer"
    _assert_envelope(gateway.post(path, json=body, headers=_bearer("gk-wrong")), 401, "authentication_error")
    assert gateway.post(path, json=body, headers=_bearer(QUERY_KEY)).status_code == 200
    assert gateway.post(path, json=body, headers=_bearer(ADMIN_KEY)).status_code == 200


def test_auth_is_checked_before_the_route_is_looked_up(gateway: httpx.Client) -> None:
    # an unauthenticated caller learns nothing about which routes exist
    _assert_envelope(gateway.post("/gateway/nope/invocations", json=CHAT), 401, "authentication_error")
    response = gateway.post("/gateway/nope/invocations", json=CHAT, headers=_bearer(QUERY_KEY))
    assert response.status_code == 404


@pytest.mark.parametrize("path", LISTINGS)
def test_auth_listing_needs_query_scope(gateway: httpx.Client, path: str) -> None:
    _assert_envelope(gateway.get(path), 401, "authentication_error")
    _assert_envelope(gateway.get(path, headers=_bearer("gk-wrong")), 401, "authentication_error")
    assert gateway.get(path, headers=_bearer(QUERY_KEY)).status_code == 200


@pytest.mark.parametrize("path", ["/health", "/docs", "/openapi.json"])
def test_auth_health_and_docs_stay_open(gateway: httpx.Client, path: str) -> None:
    assert gateway.get(path).status_code == 200


def test_auth_openapi_declares_the_bearer_scheme(gateway: httpx.Client) -> None:
    schema = gateway.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["GatewayKey"]["scheme"] == "bearer"


def test_auth_route_changes_need_admin_scope(gateway: httpx.Client) -> None:
    route = {"name": "new", "route_type": "llm/v1/chat", "model": {"provider": "fake", "name": "m"}}
    _assert_envelope(gateway.post("/api/2.0/gateway/routes/", json=route), 401, "authentication_error")
    forbidden = gateway.post("/api/2.0/gateway/routes/", json=route, headers=_bearer(QUERY_KEY))
    _assert_envelope(forbidden, 403, "permission_denied")
    assert "'ci-bot' does not have the 'admin' scope" in forbidden.json()["error"]["message"]
    deleted = gateway.delete("/api/2.0/gateway/routes/chat", headers=_bearer(QUERY_KEY))
    _assert_envelope(deleted, 403, "permission_denied")
    created = gateway.post("/api/2.0/gateway/routes/", json=route, headers=_bearer(ADMIN_KEY))
    assert created.status_code == 200, created.text


def test_auth_keys_never_reach_the_logs(gateway: httpx.Client, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        gateway.post("/gateway/chat/invocations", json=CHAT, headers=_bearer(QUERY_KEY))
        gateway.post("/gateway/chat/invocations", json=CHAT, headers=_bearer(ADMIN_KEY + "x"))
        gateway.get("/api/2.0/gateway/routes/", headers=_bearer(ADMIN_KEY))
        gateway.post(
            "/api/2.0/gateway/routes/",
            json={"name": "logged", "route_type": "llm/v1/chat", "model": {"provider": "fake"}},
            headers=_bearer(ADMIN_KEY),
        )
    assert "route 'logged' created" in caplog.text  # the capture did see the server's log
    for key in (QUERY_KEY, ADMIN_KEY):
        assert key not in caplog.text


def test_auth_without_auth_section_queries_are_open(tmp_config: Callable[..., Path]) -> None:
    app = create_app(load_config(tmp_config(CONFIG.split("auth:")[0])))
    with serve_in_thread(app) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        assert client.post("/gateway/chat/invocations", json=CHAT).status_code == 200
        assert client.get("/api/2.0/gateway/routes/").status_code == 200
        refused = client.delete("/api/2.0/gateway/routes/chat")
        _assert_envelope(refused, 403, "permission_denied")
        assert "--allow-unauthenticated-admin" in refused.json()["error"]["message"]
