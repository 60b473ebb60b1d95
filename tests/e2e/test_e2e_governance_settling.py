"""Reservations never leak, and a budget added by a reload counts the spend already made, through
real `gatewayctl serve` processes against the fake OpenAI upstream.

A token window of T tokens with requests that reserve far more than they use (``max_tokens`` 400,
an answer of a few dozen tokens): one reservation left behind fills the window at once. After
failed, cancelled, cut and abandoned requests the window must still admit exactly what the usage
table says is left; with Redis, also when Redis stops answering between admission and settle, and
when a shutdown cancels a request in flight.
"""

from __future__ import annotations

import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from governance_support import clear_of_the_hour

from gateway_server.testing import FakeOpenAI, Fault, wait_until
from gateway_server.testing.process import GatewayProcess
from gateway_server.testing.redis_server import RedisServer

pytestmark = pytest.mark.e2e

OPENAI_KEY = "sk-settling-e2e"
BODY = {"messages": [{"role": "user", "content": "Hello there friend"}], "max_tokens": 400}
ADMIN = {"Authorization": "Bearer key-admin"}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(api_key=OPENAI_KEY).serve() as upstream:
        yield upstream


@pytest.fixture
def upstream(fake: FakeOpenAI) -> FakeOpenAI:
    fake.reset()
    return fake


def _per(fake: FakeOpenAI) -> int:
    """The tokens one whole answer uses (the fake is deterministic), asked directly."""
    answer = httpx.post(
        f"{fake.api_base}/chat/completions",
        json={"model": "gpt-4o-mini", **BODY},
        headers={"Authorization": f"Bearer {OPENAI_KEY}"},
    )
    answer.raise_for_status()
    fake.reset()
    return int(answer.json()["usage"]["total_tokens"])


def _config(fake: FakeOpenAI, window: int, *, shared_state: str | None = None, budget: str = "") -> str:
    server = f"server:\n  shared_state: {shared_state}\n" if shared_state else ""
    return f"""routes:
  - name: chat
    route_type: llm/v1/chat
    model:
      provider: openai
      name: gpt-4o-mini
      config: {{openai_api_key: {OPENAI_KEY}, openai_api_base: "{fake.api_base}"}}
    limit: {{tokens: {window}, renewal_period: hour, key: api_key}}
auth:
  keys:
    - {{name: admin, key: key-admin, scopes: [query, admin]}}
    - {{name: team, key: key-team{budget}}}
{server}"""


def _post(url: str, *, stream: bool = False, timeout: float = 30) -> httpx.Response:
    body = {**BODY, "model": "chat", **({"stream": True} if stream else {})}
    with httpx.stream(
        "POST",
        f"{url}/v1/chat/completions",
        json=body,
        headers={"Authorization": "Bearer key-team"},
        timeout=timeout,
    ) as response:
        response.read()
    return response


def _team_tokens(url: str) -> int:
    report = httpx.get(f"{url}/api/2.0/gateway/usage", params={"by": "key"}, headers=ADMIN).json()
    return sum(row["total_tokens"] for row in report["usage"] if row["key"] == "team")


def _admitted_until_refused(url: str, most: int = 40) -> int:
    for admitted in range(most):
        response = _post(url)
        if response.status_code != 200:
            assert response.status_code == 429, response.text
            return admitted
    raise AssertionError(f"no refusal after {most} requests")


def _expect_exactly_the_rest(url: str, window: int, per: int) -> None:
    """The window holds exactly what was used (no reservation left behind, none given back twice):
    requests are admitted while used < window, each using ``per``."""
    used = _team_tokens(url)
    assert used < window
    assert _admitted_until_refused(url) == math.ceil((window - used) / per), used


def test_failed_cancelled_cut_and_abandoned_requests_leave_no_reservation(
    upstream: FakeOpenAI, tmp_config: Callable[..., Path], start: Callable[..., GatewayProcess]
) -> None:
    clear_of_the_hour(90)
    per = _per(upstream)
    window = 8 * per  # a single reservation (~410 tokens) left behind would fill it
    gateway = start(tmp_config(_config(upstream, window)))
    # The upstream fails (no retry, no fallback): 502 each time.
    upstream.inject(Fault.error(500), times=3)
    for _ in range(3):
        assert _post(gateway.url).status_code >= 500
    # The caller hangs up while the upstream is still thinking: the call is cancelled (499).
    upstream.inject(Fault.slow(3), times=2)
    for _ in range(2):
        with pytest.raises(httpx.ReadTimeout):
            _post(gateway.url, timeout=0.5)
    # A stream the upstream cuts after two chunks (an error event ends it); a stream the caller
    # leaves after its first bytes. Both are charged what went out.
    upstream.inject(Fault.cut_stream(2), times=1)
    cut = _post(gateway.url, stream=True)
    assert cut.status_code == 200 and '"error"' in cut.text
    upstream.inject(Fault.slow_stream(0.5), times=1)
    with httpx.stream(
        "POST",
        f"{gateway.url}/v1/chat/completions",
        json={**BODY, "model": "chat", "stream": True},
        headers={"Authorization": "Bearer key-team"},
        timeout=30,
    ) as response:
        assert response.status_code == 200
        next(response.iter_bytes())
    # The hung-up calls are over on the gateway's side (counted 499) before we count what is left.
    wait_until(lambda: 'status="499"' in httpx.get(f"{gateway.url}/metrics").text, 10)
    time.sleep(1.0)  # the abandoned stream's next chunk shows the gateway the caller has gone
    _expect_exactly_the_rest(gateway.url, window, per)


def _window_tokens(client: redis.Redis) -> int:
    """What the route's token windows in Redis count now (reservations included)."""
    return sum(int(client.get(key) or 0) for key in client.scan_iter("gatewayctl:gov:t|*"))


def test_redis_stopping_between_admission_and_settle_leaves_no_reservation(
    upstream: FakeOpenAI,
    tmp_path: Path,
    tmp_config: Callable[..., Path],
    start: Callable[..., GatewayProcess],
) -> None:
    clear_of_the_hour(120)
    per = _per(upstream)
    window = 8 * per
    with RedisServer(work_dir=tmp_path / "redis") as server:
        assert server.process is not None
        client = redis.Redis(host="127.0.0.1", port=server.port)
        gateway = start(tmp_config(_config(upstream, window, shared_state=server.url)))
        upstream.inject(Fault.slow(1.0), times=1)
        answers: list[httpx.Response] = []
        caller = threading.Thread(target=lambda: answers.append(_post(gateway.url)))
        caller.start()
        wait_until(lambda: len(upstream.requests) == 1, 10)  # admitted: the reservation is in Redis
        assert _window_tokens(client) > window
        os.kill(server.process.pid, signal.SIGSTOP)  # Redis stops answering before the settle
        try:
            caller.join(30)
            assert answers and answers[0].status_code == 200  # the answer is served all the same
            assert "did not answer" in gateway.output  # the settle failed: logged, kept
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
        # Redis answers again: the next flush replaces the reservation by what was used.
        wait_until(lambda: _window_tokens(client) == per, 10, message="the kept settle was not written")
        _expect_exactly_the_rest(gateway.url, window, per)
        client.close()


def test_a_request_cancelled_by_shutdown_gives_its_reservation_back(
    upstream: FakeOpenAI,
    redis_url: str,
    tmp_config: Callable[..., Path],
    start: Callable[..., GatewayProcess],
) -> None:
    clear_of_the_hour(120)
    per = _per(upstream)
    window = 8 * per
    client = redis.Redis.from_url(redis_url)
    config = tmp_config(_config(upstream, window, shared_state=redis_url))
    gateway = start(config, "--graceful-timeout", "0.5")
    upstream.inject(Fault.slow(10), times=1)
    caller = threading.Thread(target=_swallow, args=(gateway.url,))
    caller.start()
    wait_until(lambda: len(upstream.requests) == 1, 10)
    assert _window_tokens(client) > window  # reserved
    assert gateway.stop() == 0  # SIGTERM: past 0.5 s the request in flight is cancelled
    caller.join(30)
    assert _window_tokens(client) == 0, "the cancelled request's reservation was left in Redis"
    again = start(config)
    _expect_exactly_the_rest(again.url, window, per)
    client.close()


def _swallow(url: str) -> Any:
    try:
        return _post(url, timeout=20)
    except httpx.HTTPError as exc:  # the server went away mid-request: expected here
        return exc


@pytest.mark.parametrize("shared", [False, True], ids=["embedded", "redis"])
def test_a_budget_added_by_a_reload_counts_the_spend_already_made(
    shared: bool,
    request: pytest.FixtureRequest,
    upstream: FakeOpenAI,
    tmp_config: Callable[..., Path],
    start: Callable[..., GatewayProcess],
) -> None:
    per = _per(upstream)
    shared_state = request.getfixturevalue("redis_url") if shared else None
    window = 1000 * per  # not the point here
    config = tmp_config(_config(upstream, window, shared_state=shared_state))
    gateway = start(config)
    for _ in range(3):
        assert _post(gateway.url).status_code == 200
    # No restart: the file is rewritten under the running server with a budget of 5 answers'
    # tokens this month. 3 are spent, so 2 more are admitted (used < budget), then 429.
    reloads = gateway.output.count("reloaded")
    budget = f", budget: {{tokens: {5 * per}, period: month}}"
    config.write_text(_config(upstream, window, shared_state=shared_state, budget=budget))
    wait_until(lambda: gateway.output.count("reloaded") > reloads, 10, message="the config was not reloaded")
    assert _admitted_until_refused(gateway.url) == 2
    refused = _post(gateway.url)
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "budget_exceeded"
    assert f"has spent {5 * per:,} tokens" in refused.json()["error"]["message"]
    keys = httpx.get(f"{gateway.url}/api/2.0/gateway/keys", headers=ADMIN).json()["keys"]
    team = next(key for key in keys if key["name"] == "team")
    assert team["spent"] == 5 * per and team["left"] == 0
