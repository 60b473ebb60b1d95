"""SPEC §7 scale-out, with real `gatewayctl serve` processes sharing one redis-server: a limit of N
calls admits N in total across processes and workers; a route created or deleted through one
process is served (or gone) in the other within a bound; Redis down is a clear error, not a hang."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import orjson
import pytest
import redis

from gateway_server.shared import POLL_INTERVAL
from gateway_server.testing import FakeOpenAI, free_port, wait_until
from gateway_server.testing.process import GatewayProcess
from gateway_server.testing.redis_server import RedisServer

pytestmark = pytest.mark.e2e

CHAT = {"messages": [{"role": "user", "content": "hi"}]}
ROUTES = "/api/2.0/gateway/routes/"
KEY_ENV = "SHARED_E2E_OPENAI_KEY"
KEY = "sk-SENTINEL-shared-e2e-7777"
VISIBLE_WITHIN = 5.0  # seconds; the watcher looks every POLL_INTERVAL (0.5 s)


def _config(redis_url: str, calls: int = 6, credentials: str = "") -> str:
    # An hour's window: the sliding-window counter is exact while the test stays inside one window.
    return f"""{credentials}routes:
  - name: limited
    route_type: llm/v1/chat
    model: {{provider: fake, name: fake-chat}}
    limit: {{calls: {calls}, renewal_period: hour}}
  - name: open
    route_type: llm/v1/chat
    model: {{provider: fake, name: fake-chat}}
server:
  shared_state: {redis_url}
"""


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., GatewayProcess]]:
    """``start(config_path, *serve_args)``: a started gateway, stopped (and checked) at the end."""
    with ExitStack() as stack:
        started: list[GatewayProcess] = []

        def run(config: Path, *args: str) -> GatewayProcess:
            name = f"gw{len(started)}"
            process = GatewayProcess(
                config,
                log_dir=tmp_path,
                name=name,
                env={KEY_ENV: KEY},
                args=["--allow-unauthenticated-admin", *args],
            )
            stack.enter_context(process)
            started.append(process)
            return process

        yield run
    for process in started:
        assert KEY not in process.output, "the provider key appeared in a gateway's output"


def test_limit_admits_n_calls_in_total_across_processes_and_workers(
    redis_url: str, tmp_config: Callable[..., Path], start: Callable[..., GatewayProcess]
) -> None:
    config = tmp_config(_config(redis_url, calls=6))
    gateways = [start(config, "--workers", "2"), start(config)]  # three serving processes in all
    statuses = []
    for index in range(15):  # a new connection each time, so the workers take turns as they come
        url = gateways[index % 2].url
        statuses.append(httpx.post(f"{url}/gateway/limited/invocations", json=CHAT, timeout=10).status_code)
    assert statuses.count(200) == 6 and statuses.count(429) == 9, statuses
    assert statuses[:6] == [200] * 6
    last = httpx.post(f"{gateways[1].url}/gateway/limited/invocations", json=CHAT, timeout=10)
    assert last.headers["x-ratelimit-remaining"] == "0" and int(last.headers["retry-after"]) > 3000


def test_route_created_in_one_process_is_served_by_another(
    redis_url: str,
    tmp_config: Callable[..., Path],
    start: Callable[..., GatewayProcess],
    fake_openai: FakeOpenAI,
) -> None:
    # Routes created at run time use the key the file holds through a credential (never $ENV).
    credential = (
        "credentials:\n"
        f"  openai-shared: {{provider: openai, config: {{openai_api_key: ${KEY_ENV}, "
        f"openai_api_base: '{fake_openai.api_base}'}}}}\n"
    )
    config = tmp_config(_config(redis_url, credentials=credential))
    a, b = start(config), start(config)
    body = {
        "name": "gpt",
        "route_type": "llm/v1/chat",
        "model": {"name": "gpt-4o-mini", "provider": "openai", "credentials": "openai-shared"},
    }
    assert httpx.post(f"{a.url}{ROUTES}", json=body, timeout=10).status_code == 200
    created = time.monotonic()
    assert httpx.post(f"{a.url}/gateway/gpt/invocations", json=CHAT, timeout=10).status_code == 200

    def served_by(gateway: GatewayProcess, status: int) -> bool:
        return (
            httpx.post(f"{gateway.url}/gateway/gpt/invocations", json=CHAT, timeout=10).status_code == status
        )

    wait_until(lambda: served_by(b, 200), VISIBLE_WITHIN, message="B never served the route created in A")
    assert time.monotonic() - created < VISIBLE_WITHIN
    assert fake_openai.last_request.headers["authorization"] == f"Bearer {KEY}"  # B's file's credential
    stored = redis.Redis.from_url(redis_url).hget("gatewayctl:routes", "gpt")
    assert orjson.loads(stored)["model"]["credentials"] == "openai-shared"
    assert KEY.encode() not in stored

    assert httpx.post(f"{b.url}{ROUTES}", json=body, timeout=10).status_code == 409  # taken everywhere
    assert httpx.delete(f"{b.url}{ROUTES}gpt", timeout=10).status_code == 200
    deleted = time.monotonic()
    wait_until(lambda: served_by(a, 404), VISIBLE_WITHIN, message="A kept serving the route deleted in B")
    assert time.monotonic() - deleted < VISIBLE_WITHIN
    assert POLL_INTERVAL <= 1


def test_serve_refuses_to_start_when_redis_does_not_answer(tmp_config: Callable[..., Path]) -> None:
    port = free_port()  # nothing listens there
    config = tmp_config(_config(f"redis://:hunter2-SENTINEL@127.0.0.1:{port}/0"))
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "gatewayctl", "serve", str(config), "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert time.monotonic() - started < 30
    assert result.returncode == 5, result.stderr
    assert f"Redis at redis://:***@127.0.0.1:{port}/0 did not answer" in result.stderr
    assert "hunter2" not in result.stdout + result.stderr


def test_redis_stopping_at_run_time_is_a_503_not_a_hang(
    tmp_path: Path, tmp_config: Callable[..., Path], start: Callable[..., GatewayProcess]
) -> None:
    with RedisServer(work_dir=tmp_path / "own-redis") as own:
        config = tmp_config(_config(own.url))
        gateway = start(config)
        assert (
            httpx.post(f"{gateway.url}/gateway/limited/invocations", json=CHAT, timeout=10).status_code == 200
        )
    # Redis is gone now.
    began = time.monotonic()
    limited = httpx.post(f"{gateway.url}/gateway/limited/invocations", json=CHAT, timeout=20)
    new_route = {"name": "late", "route_type": "llm/v1/chat", "model": {"name": "c", "provider": "fake"}}
    change = httpx.post(f"{gateway.url}{ROUTES}", json=new_route, timeout=20)
    assert time.monotonic() - began < 10
    assert limited.status_code == 503 and limited.headers["retry-after"] == "1"
    assert limited.json()["error"]["type"] == "shared_state_unavailable"
    assert change.status_code == 503 and "was not made" in change.json()["error"]["message"]
    assert httpx.post(f"{gateway.url}/gateway/open/invocations", json=CHAT, timeout=10).status_code == 200
    wait_until(lambda: "did not answer" in gateway.output, 5, message="the outage was not logged")
