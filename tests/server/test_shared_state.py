"""``server.shared_state`` in one process against a real redis-server: counters shared between
limiters, the one-round-trip hit agreeing with the ``limits`` package, the route overlay, and
Redis not answering (clear errors, no password, no hang). Several processes: tests/e2e."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis

from gateway_server.app import create_app
from gateway_server.config import load_config, parse_config, parse_route
from gateway_server.errors import SharedStateUnavailableError
from gateway_server.limits import RateLimiter, RouteLimit, check_workers
from gateway_server.limits_redis import RedisWindows
from gateway_server.runtime.overlay import RouteOverlay
from gateway_server.shared import SharedState, check_reachable, redacted_url
from gateway_server.testing import serve_in_thread

CHAT = {"messages": [{"role": "user", "content": "hi"}]}
ROUTES = "/api/2.0/gateway/routes/"


@pytest.fixture(autouse=True)
def _shared_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHARED_TEST_OPENAI_KEY", "sk-SENTINEL-shared-1")  # the file's credential


@pytest.fixture
def closed_port() -> Iterator[int]:
    """Bound, never listening: connecting is refused at once."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def _config(redis_url: str, limit: str = "") -> str:
    return f"""credentials:
  openai-shared: {{provider: openai, config: {{openai_api_key: $SHARED_TEST_OPENAI_KEY}}}}
routes:
  - name: chat
    route_type: llm/v1/chat
    model: {{provider: fake, name: fake-chat}}
{limit}  - name: open
    route_type: llm/v1/chat
    model: {{provider: fake, name: fake-chat}}
server:
  shared_state: {redis_url}
"""


# ---------------------------------------------------------------- counters


def test_shared_limiters_count_together(redis_url: str) -> None:
    limit = RouteLimit.build("chat", 3, 3600, "route")

    async def scenario() -> list[bool]:
        first, second = SharedState(redis_url), SharedState(redis_url)  # two processes' worth
        a, b = RateLimiter(RedisWindows(first)), RateLimiter(RedisWindows(second))
        try:
            decisions = [await limiter.hit(limit, "*") for limiter in (a, b, a, b, a)]
        finally:
            await first.close()
            await second.close()
        return [decision.allowed for decision in decisions]

    assert asyncio.run(scenario()) == [True, True, True, False, False]


def test_one_trip_hit_agrees_with_the_limits_package(redis_url: str) -> None:
    """Our single-script hit uses the package's counters: its own hit and stats see the same."""
    limit = RouteLimit.build("chat", 4, 3600, "client_ip")

    async def scenario() -> None:
        shared = SharedState(redis_url)
        limiter = RateLimiter(RedisWindows(shared))
        try:
            ours = [await limiter.hit(limit, "10.0.0.1") for _ in range(2)]
            assert [(d.allowed, d.remaining) for d in ours] == [(True, 3), (True, 2)]
            assert 3590 < ours[-1].reset_after <= 3600
            package = limiter.store._limiter  # type: ignore[union-attr]  # the limits strategy on the same storage
            assert await package.hit(limit.item, "chat", "10.0.0.1")  # the package's own path: 3rd
            stats = await package.get_window_stats(limit.item, "chat", "10.0.0.1")
            assert stats.remaining == 1
            last = [await limiter.hit(limit, "10.0.0.1") for _ in range(2)]
            assert [(d.allowed, d.remaining) for d in last] == [(True, 0), (False, 0)]
            assert (await limiter.hit(limit, "10.0.0.2")).remaining == 3  # another key, its own count
        finally:
            await shared.close()

    asyncio.run(scenario())
    keys = redis.Redis.from_url(redis_url).keys("*")
    assert keys and all(key.startswith(b"gatewayctl:limits:") for key in keys)


def test_limiter_answers_503_at_once_when_redis_is_down(closed_port: int) -> None:
    url = f"redis://:hunter2-SENTINEL@127.0.0.1:{closed_port}/0"
    limit = RouteLimit.build("chat", 3, 60, "route")

    async def scenario() -> SharedStateUnavailableError:
        shared = SharedState(url)
        try:
            with pytest.raises(SharedStateUnavailableError) as caught:
                await RateLimiter(RedisWindows(shared)).hit(limit, "*")
        finally:
            await shared.close()
        return caught.value

    started = time.monotonic()
    error = asyncio.run(scenario())
    assert time.monotonic() - started < 5
    assert error.status_code == 503 and error.headers() == {"Retry-After": "1"}
    assert "route 'chat'" in error.message.lower()
    assert "hunter2" not in error.message and str(closed_port) not in error.message  # callers see no URL


def test_workers_allowed_with_limits_when_state_is_shared(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    limit = "    limit: {calls: 2, renewal_period: minute}\n"
    path.write_text(_config("redis://127.0.0.1:6379/0", limit), encoding="utf-8")
    check_workers(load_config(path), 4)  # no error: the workers count in the same Redis


# ---------------------------------------------------------------- start-up


def test_redacted_url_hides_only_the_password() -> None:
    assert redacted_url("redis://:s3cret@10.0.0.5:6380/2") == "redis://:***@10.0.0.5:6380/2"
    assert redacted_url("rediss://app:s3cret@cache.internal/0") == "rediss://app:***@cache.internal/0"
    assert redacted_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


def test_unreachable_redis_is_named_without_its_password(closed_port: int) -> None:
    url = f"redis://:hunter2-SENTINEL@127.0.0.1:{closed_port}/0"
    with pytest.raises(SharedStateUnavailableError) as caught:
        check_reachable(url)
    message = str(caught.value)
    assert f"redis://:***@127.0.0.1:{closed_port}/0" in message
    assert "hunter2" not in message and "cannot start" in message


# ---------------------------------------------------------------- routes


def test_overlay_merge_rules() -> None:
    base = parse_config(_config("redis://127.0.0.1:6379/0"))
    replacement = parse_route(
        {"name": "open", "route_type": "llm/v1/embeddings", "model": {"name": "e", "provider": "fake"}}
    )
    extra = parse_route(
        {"name": "extra", "route_type": "llm/v1/chat", "model": {"name": "c", "provider": "fake"}}
    )
    overlay = RouteOverlay(3, {"open": replacement, "extra": extra}, frozenset({"chat"}))
    merged = overlay.merge(base)
    assert [(route.name, route.route_type.value) for route in merged.routes] == [
        ("extra", "llm/v1/chat"),
        ("open", "llm/v1/embeddings"),  # a created route wins over the file's of the same name
    ]
    assert RouteOverlay().merge(base) is base


@pytest.fixture
def shared_app(redis_url: str, tmp_path: Path) -> Iterator[httpx.Client]:
    path = tmp_path / "gateway.yaml"
    path.write_text(_config(redis_url), encoding="utf-8")
    app = create_app(load_config(path))
    app.state.auth.allow_unauthenticated_admin = True
    with serve_in_thread(app) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        yield client
    assert path.read_text(encoding="utf-8") == _config(redis_url)  # Redis holds the changes, not the file


def _openai_route(api_key: str) -> dict[str, Any]:
    """A route-create body for an OpenAI chat route named 'gpt'."""
    return {
        "name": "gpt",
        "route_type": "llm/v1/chat",
        "model": {"name": "gpt-4o-mini", "provider": "openai", "config": {"openai_api_key": api_key}},
    }


def test_created_route_is_stored_as_given(shared_app: httpx.Client, redis_url: str) -> None:
    body = _openai_route("sk-unused")
    body["model"] = {"name": "gpt-4o-mini", "provider": "openai", "credentials": "openai-shared"}
    assert shared_app.post(ROUTES, json=body).status_code == 200
    assert shared_app.get(f"{ROUTES}gpt").status_code == 200  # served here at once
    store = redis.Redis.from_url(redis_url)
    assert orjson.loads(store.hget("gatewayctl:routes", "gpt")) == body
    assert b"sk-SENTINEL" not in b"".join(store.hvals("gatewayctl:routes"))
    assert shared_app.post(ROUTES, json=body).status_code == 409


def test_literal_secret_is_refused_with_shared_state(shared_app: httpx.Client, redis_url: str) -> None:
    body = _openai_route("sk-SENTINEL-literal")
    response = shared_app.post(ROUTES, json=body)
    assert response.status_code == 400
    assert "name a credential" in response.json()["error"]["message"]
    assert "sk-SENTINEL" not in response.text
    assert redis.Redis.from_url(redis_url).keys("gatewayctl:routes*") == []


def test_deleting_a_file_route_leaves_a_tombstone(shared_app: httpx.Client, redis_url: str) -> None:
    assert shared_app.delete(f"{ROUTES}chat").status_code == 200
    assert shared_app.get(f"{ROUTES}chat").status_code == 404
    assert shared_app.post("/gateway/chat/invocations", json=CHAT).status_code == 404
    assert shared_app.delete(f"{ROUTES}chat").status_code == 404
    store = redis.Redis.from_url(redis_url)
    assert store.smembers("gatewayctl:routes:deleted") == {b"chat"}
    recreated = {"name": "chat", "route_type": "llm/v1/chat", "model": {"name": "again", "provider": "fake"}}
    assert shared_app.post(ROUTES, json=recreated).status_code == 200
    assert store.smembers("gatewayctl:routes:deleted") == set()
    assert shared_app.post("/gateway/chat/invocations", json=CHAT).status_code == 200


def test_a_shared_route_change_is_one_line_per_server(
    redis_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Two workers of one server (one server directory) and a worker of another server share Redis:
    the worker that made the change logs it naming the key; its sibling applies it at debug; the
    other server's owner logs it once, as made elsewhere."""
    from gateway_server.runtime import RouteTable
    from gateway_server.runtime.change_log import ChangeLog
    from gateway_server.runtime.redis_store import RedisStore

    path = tmp_path / "gateway.yaml"
    path.write_text(_config(redis_url), encoding="utf-8")
    config = load_config(path)
    server_a, server_b = tmp_path / "a", tmp_path / "b"
    server_a.mkdir()
    server_b.mkdir()
    body = {"name": "gpt", "route_type": "llm/v1/chat", "model": {"name": "x", "provider": "fake"}}

    async def scenario() -> None:
        tables = [
            RouteTable(
                config, RedisStore(SharedState(redis_url, poll_interval=0.05)), changes=ChangeLog(str(d))
            )
            for d in (server_a, server_a, server_b)
        ]
        async with tables[0].running(), tables[1].running(), tables[2].running():
            caplog.set_level(logging.DEBUG, logger="gateway_server.runtime")
            caplog.clear()
            await tables[0].create(body, key="ops")
            deadline = time.monotonic() + 5
            while not all(table.get("gpt") for table in tables):
                assert time.monotonic() < deadline, "the change did not reach every table"
                await asyncio.sleep(0.02)

    asyncio.run(scenario())
    lines = [record for record in caplog.records if "added: gpt" in record.getMessage()]
    shown = [record.getMessage() for record in lines if record.levelno >= logging.INFO]
    assert len(lines) == 3, [record.getMessage() for record in lines]
    assert len(shown) == 2, shown  # was 3: every table logged it
    assert shown[0].startswith("route 'gpt' created (shared state) by key 'ops': added: gpt")
    assert "(changed through another server): added: gpt" in shown[1]
