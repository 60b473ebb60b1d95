"""Rate limits on every path family (/gateway, /endpoints, /v1), per key kind, with the 429's
headers; and ``--workers > 1`` refused when a route is limited."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway_server.app import create_app
from gateway_server.config import load_config, parse_config
from gateway_server.errors import ConfigError
from gateway_server.runner import run
from gateway_server.testing import serve_in_thread

CHAT = {"messages": [{"role": "user", "content": "hi"}]}
PATHS = {
    "gateway": ("/gateway/chat/invocations", CHAT),
    "endpoints": ("/endpoints/chat/invocations", CHAT),
    "v1": ("/v1/chat/completions", {**CHAT, "model": "chat"}),
}


def _config(key: str = "route", calls: int = 2) -> str:
    return f"""routes:
  - name: chat
    route_type: llm/v1/chat
    model: {{provider: fake, name: fake-chat}}
    limit: {{calls: {calls}, renewal_period: minute, key: {key}}}
  - name: open
    route_type: llm/v1/chat
    model: {{provider: fake, name: fake-chat}}
"""


@pytest.fixture
def client(request: pytest.FixtureRequest) -> Iterator[httpx.Client]:
    key = getattr(request, "param", "route")
    with (
        serve_in_thread(create_app(parse_config(_config(key)))) as server,
        httpx.Client(base_url=server.url, timeout=10) as http,
    ):
        yield http


@pytest.mark.parametrize("family", list(PATHS))
def test_limit_on_each_path_family(client: httpx.Client, family: str) -> None:
    path, body = PATHS[family]
    first, second, third = (client.post(path, json=body) for _ in range(3))
    assert first.status_code == second.status_code == 200
    assert first.headers["x-ratelimit-limit"] == "2"
    assert (first.headers["x-ratelimit-remaining"], second.headers["x-ratelimit-remaining"]) == ("1", "0")
    assert 0 < int(first.headers["x-ratelimit-reset"]) <= 60
    assert third.status_code == 429
    # The real wait for room (limits.wait_for_room): with both calls in the current window, the rest
    # of that window plus half a period (up to 90 s), not just the window's end.
    assert 1 <= int(third.headers["retry-after"]) <= 90
    assert third.headers["x-ratelimit-limit"] == "2" and third.headers["x-ratelimit-remaining"] == "0"
    error = third.json()["error"]
    assert error["type"] == "rate_limit_error" and "route 'chat' allows 2 per 60 seconds" in error["message"]


def test_one_counter_across_path_families(client: httpx.Client) -> None:
    statuses = [client.post(path, json=body).status_code for path, body in PATHS.values()]
    assert statuses == [200, 200, 429]  # MLflow keeps one counter per path prefix (and none on /v1)


def test_unlimited_route_is_untouched(client: httpx.Client) -> None:
    for _ in range(4):
        response = client.post("/gateway/open/invocations", json=CHAT)
        assert response.status_code == 200 and "x-ratelimit-limit" not in response.headers


def test_stream_carries_the_limit_headers(client: httpx.Client) -> None:
    response = client.post("/gateway/chat/invocations", json={**CHAT, "stream": True})
    assert response.status_code == 200 and response.headers["x-ratelimit-remaining"] == "1"
    assert response.text.endswith("data: [DONE]\n\n")


@pytest.mark.parametrize("client", ["api_key"], indirect=True)
def test_api_key_limits_count_per_key(client: httpx.Client) -> None:
    alice = {"Authorization": "Bearer key-alice"}
    bob = {"Authorization": "Bearer key-bob"}
    assert [
        client.post("/gateway/chat/invocations", json=CHAT, headers=alice).status_code for _ in range(3)
    ] == [
        200,
        200,
        429,
    ]
    response = client.post("/gateway/chat/invocations", json=CHAT, headers=bob)
    assert response.status_code == 200
    assert "for this API key" in client.post("/gateway/chat/invocations", json=CHAT, headers=alice).text


@pytest.mark.parametrize("client", ["client_ip"], indirect=True)
def test_client_ip_limits(client: httpx.Client) -> None:
    statuses = [client.post("/gateway/chat/invocations", json=CHAT).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]


def test_workers_refused_when_a_route_is_limited(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(_config(), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        run(str(path), workers=2)  # refused before anything listens
    message = str(caught.value)
    assert "--workers 2" in message and "'chat'" in message and "each worker's own memory" in message


def test_workers_allowed_without_limits(tmp_path: Path) -> None:
    from gateway_server.limits import check_workers

    path = tmp_path / "gateway.yaml"
    path.write_text(_config().replace("    limit: {calls: 2, renewal_period: minute, key: route}\n", ""))
    check_workers(load_config(path), 4)  # no error


def test_api_key_limits_use_the_gateway_key_name() -> None:
    config = parse_config(
        _config("api_key")
        + """auth:
  keys:
    - {name: alice, key: key-alice}
    - {name: bob, key: key-bob}
"""
    )
    alice = {"Authorization": "Bearer key-alice"}
    bob = {"Authorization": "Bearer key-bob"}
    with serve_in_thread(create_app(config)) as server, httpx.Client(base_url=server.url) as http:
        statuses = [
            http.post("/gateway/chat/invocations", json=CHAT, headers=alice).status_code for _ in range(3)
        ]
        assert statuses == [200, 200, 429]
        assert (
            http.post("/v1/chat/completions", json={**CHAT, "model": "chat"}, headers=bob).status_code == 200
        )
        assert http.post("/gateway/chat/invocations", json=CHAT).status_code == 401  # auth first, no count
