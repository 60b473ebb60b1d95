"""Where spend and windows live, with real `gatewayctl serve` processes: the embedded store keeps a
key's spend across a restart (and a SIGKILL loses at most the last second), and with a real Redis
two processes admit exactly T tokens in total; Redis down is a clear 503, never unlimited admission."""

from __future__ import annotations

import os
import signal
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from governance_support import admitted_until_refused, invoke, tokens_per_request

from gateway_server.routes import RouteType
from gateway_server.testing import FakeOpenAI, Fault, wait_until
from gateway_server.testing.process import GatewayProcess
from gateway_server.testing.redis_server import RedisServer

pytestmark = pytest.mark.e2e

CHAT = RouteType.CHAT
PER = tokens_per_request(CHAT)


def _config(tokens_budget: int, *, shared_state: str | None = None, window: int | None = None) -> str:
    limit = f"\n    limit: {{tokens: {window}, renewal_period: hour}}" if window else ""
    server = f"server:\n  shared_state: {shared_state}\n" if shared_state else ""
    return f"""routes:
  - name: chat
    route_type: llm/v1/chat
    model: {{provider: fake, name: fake-model, price: {{input: 1, output: 2}}}}{limit}
  - name: open
    route_type: llm/v1/chat
    model: {{provider: fake, name: fake-model}}
auth:
  keys:
    - {{name: admin, key: key-admin, scopes: [query, admin]}}
    - {{name: team, key: key-team, budget: {{tokens: {tokens_budget}, period: month}}}}
    - {{name: other, key: key-other}}
{server}"""


def _spent(url: str) -> float:
    keys = httpx.get(f"{url}/api/2.0/gateway/keys", headers={"Authorization": "Bearer key-admin"}).json()
    return next(key for key in keys["keys"] if key["name"] == "team")["spent"]


def test_restart_keeps_the_spend(
    tmp_config: Callable[..., Path], start: Callable[..., GatewayProcess]
) -> None:
    config = tmp_config(_config(3 * PER))  # three requests spend it all
    gateway = start(config)
    for _ in range(2):
        assert invoke(gateway.url, "gateway", "chat", CHAT, "key-team").status_code == 200
    assert gateway.stop() == 0
    assert config.with_name("gateway.usage.db").exists()  # the embedded store, beside the config
    again = start(config)
    assert _spent(again.url) == 2 * PER
    admitted, refused = admitted_until_refused(lambda: invoke(again.url, "v1", "chat", CHAT, "key-team"))
    assert admitted == 1 and refused.json()["error"]["code"] == "budget_exceeded"
    usage = httpx.get(
        f"{again.url}/api/2.0/gateway/usage",
        params={"by": "key"},
        headers={"Authorization": "Bearer key-admin"},
    ).json()
    team = next(row for row in usage["usage"] if row["key"] == "team")
    assert team["requests"] == 3 and team["total_tokens"] == 3 * PER


def _rows_written(db: Path) -> int:
    if not db.exists():
        return 0
    with sqlite3.connect(db) as connection:
        (count,) = connection.execute("SELECT COALESCE(SUM(requests), 0) FROM usage").fetchone()
    return int(count)


def test_sigkill_loses_at_most_the_last_second(
    tmp_config: Callable[..., Path], start: Callable[..., GatewayProcess]
) -> None:
    config = tmp_config(_config(4 * PER))
    db = config.with_name("gateway.usage.db")
    gateway = start(config)
    for _ in range(2):
        assert invoke(gateway.url, "endpoints", "chat", CHAT, "key-team", stream=True).status_code == 200
    # Written within about a second, without a shutdown: poll the file (a deadline, not a sleep).
    wait_until(lambda: _rows_written(db) == 2, 5, message="usage was not written within the flush interval")
    assert gateway.process is not None
    os.kill(gateway.process.pid, signal.SIGKILL)
    gateway.process.wait(10)
    again = start(config)
    assert _spent(again.url) == 2 * PER
    admitted, _ = admitted_until_refused(lambda: invoke(again.url, "gateway", "chat", CHAT, "key-team"))
    assert admitted == 2


def test_two_processes_on_redis_admit_exactly_t_tokens(
    redis_url: str, tmp_config: Callable[..., Path], start: Callable[..., GatewayProcess]
) -> None:
    tokens = 12 * PER
    config = tmp_config(_config(10**9, shared_state=redis_url, window=tokens))
    gateways = [start(config), start(config)]

    def call(index: int) -> int:
        return invoke(gateways[index % 2].url, "v1", "chat", CHAT, "key-other").status_code

    # A burst at once across both processes: reservations keep it under the limit...
    with ThreadPoolExecutor(8) as pool:
        burst = list(pool.map(call, range(16)))
    assert burst.count(200) <= 12
    # ...and one at a time, alternating, the rest of the window fills exactly.
    statuses = [call(index) for index in range(16)]
    assert burst.count(200) + statuses.count(200) == 12, (burst, statuses)
    assert statuses[-1] == 429
    # Budgets are shared too: spend made through one process shows in the other.
    invoke(gateways[0].url, "gateway", "open", CHAT, "key-team")
    assert _spent(gateways[1].url) == PER


def test_redis_down_is_a_503_never_unlimited_admission(
    tmp_path: Path, tmp_config: Callable[..., Path], start: Callable[..., GatewayProcess]
) -> None:
    with RedisServer(work_dir=tmp_path / "own-redis") as own:
        gateway = start(tmp_config(_config(10**9, shared_state=own.url, window=100 * PER)))
        assert invoke(gateway.url, "gateway", "chat", CHAT, "key-other").status_code == 200
    # Redis is gone: neither a token limit nor a budget may admit unchecked.
    for route, key in (("chat", "key-other"), ("open", "key-team")):
        refused = invoke(gateway.url, "v1", route, CHAT, key)
        assert refused.status_code == 503, refused.text
        error = refused.json()["error"]
        assert error["type"] == "shared_state_unavailable"
        assert "token limits or a budget" in error["message"]
        assert refused.headers["retry-after"] == "1"
    # Nothing governed: still served (its usage is kept and written when Redis answers again).
    assert invoke(gateway.url, "gateway", "open", CHAT, "key-other").status_code == 200
    wait_until(lambda: "did not answer" in gateway.output, 5, message="the outage was not logged")


def test_fallback_is_charged_at_its_own_price(
    tmp_config: Callable[..., Path], start: Callable[..., GatewayProcess]
) -> None:
    with FakeOpenAI(api_key="sk-fallback-test").serve() as fake:
        fake.inject(Fault.error(500), times=None)
        config = tmp_config(
            f"""routes:
  - name: chat
    route_type: llm/v1/chat
    model: {{provider: openai, name: gpt-4o-mini, price: {{input: 1000, output: 1000}},
             config: {{openai_api_key: sk-fallback-test, openai_api_base: "{fake.api_base}"}}}}
    fallbacks:
      - {{provider: fake, name: fake-model, price: {{input: 1, output: 1}}}}
    retry: {{attempts: 2, backoff: 0}}
"""
        )
        gateway = start(config, "--allow-unauthenticated-admin")
        answer = invoke(gateway.url, "v1", "chat", CHAT, "anything")
        assert answer.status_code == 200 and answer.headers["x-gateway-model"] == "fake/fake-model"
        assert len(fake.requests) == 2  # the primary was tried twice, and failed
    report = httpx.get(f"{gateway.url}/api/2.0/gateway/usage", params={"by": "model"}).json()
    assert [row["model"] for row in report["usage"]] == ["fake/fake-model"]
    assert report["usage"][0]["cost_usd"] == pytest.approx(PER / 1e6)
