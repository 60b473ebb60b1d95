"""``gatewayctl top`` against a real ``gatewayctl serve --workers 2``: ``--once -o json`` matches
what was sent, and the live view draws and refreshes in a real terminal (tmux)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway_server.testing import wait_until
from gateway_server.testing.process import GatewayProcess
from gatewayctl.cli.top import quantile, view

KEY = "gw-top-secret-4242"
CONFIG = """\
auth:
  keys:
    - {name: viewer, key: $TOP_TEST_KEY, scopes: [query]}
routes:
  - name: chat
    route_type: llm/v1/chat
    model: {provider: fake, name: fake-chat}
  - name: idle
    route_type: llm/v1/embeddings
    model: {provider: fake, name: fake-embed}
"""
CHAT = {"messages": [{"role": "user", "content": "Hello there, gateway"}]}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    workdir = tmp_path_factory.mktemp("top")
    config = workdir / "gateway.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    with GatewayProcess(
        config, log_dir=workdir, env={"TOP_TEST_KEY": KEY}, args=["--workers", "2"]
    ) as process:
        yield process


def _top(gateway: GatewayProcess, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GATEWAYCTL_API_KEY": KEY, "NO_PROXY": "127.0.0.1"}
    return subprocess.run(
        [sys.executable, "-m", "gatewayctl", "top", "--gateway-uri", gateway.url, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def test_top_once_json_matches_what_was_sent(gateway: GatewayProcess) -> None:
    prompt = completion = 0
    with httpx.Client(trust_env=False, timeout=10, headers={"authorization": f"Bearer {KEY}"}) as client:
        for _ in range(12):
            answer = client.post(f"{gateway.url}/v1/chat/completions", json={"model": "chat", **CHAT}).json()
            prompt += answer["usage"]["prompt_tokens"]
            completion += answer["usage"]["completion_tokens"]
        for _ in range(3):  # a bad request on a known route: counted as an error of that route
            assert (
                client.post(f"{gateway.url}/gateway/chat/invocations", json={"messages": "x"}).status_code
                == 400
            )
    result = _top(gateway, "--once", "-o", "json", "--interval", "0.2")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)["data"]
    chat = data["routes"]["chat"]
    assert (chat["requests"], chat["errors"]) == (15, 3)
    assert (chat["prompt_tokens"], chat["completion_tokens"]) == (prompt, completion)
    assert chat["in_flight"] == 0 and chat["breaker"] == "closed"
    assert chat["p50_ms"] is not None and chat["p50_ms"] <= chat["p99_ms"]
    assert data["routes"]["idle"]["requests"] == 0
    assert data["totals"]["requests"] == 15
    assert data["uptime_seconds"] > 0


def test_top_needs_the_query_scope(gateway: GatewayProcess) -> None:
    response = httpx.get(f"{gateway.url}/api/2.0/gateway/stats", timeout=10)
    assert response.status_code == 401
    env_free = subprocess.run(
        [sys.executable, "-m", "gatewayctl", "top", "--once", "--gateway-uri", gateway.url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={k: v for k, v in os.environ.items() if k != "GATEWAYCTL_API_KEY"},
    )
    assert env_free.returncode != 0 and "API key" in env_free.stderr


def _tmux() -> str:
    found = shutil.which("tmux")
    if found is None:
        reason = "tmux is not installed (scripts/test installs it on Debian)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI must run the live-view test", pytrace=False)
        pytest.skip(reason)
    return found


def _rps(screen: str, route: str) -> str | None:
    """The RPS cell of ``route``'s row in the drawn table."""
    for line in screen.splitlines():
        cells = [cell.strip() for cell in line.split("\u2502")]  # the table's vertical bar
        if len(cells) > 2 and cells[1] == route:
            return cells[2]
    return None


def test_top_live_view_refreshes_in_a_terminal(gateway: GatewayProcess, tmp_path: Path) -> None:
    tmux = _tmux()
    session = f"gatewayctl-top-{uuid.uuid4().hex[:8]}"
    socket = str(tmp_path / "tmux.sock")  # a server of its own: nothing shared with a user's tmux

    def run(*args: str) -> str:
        return subprocess.run(
            [tmux, "-S", socket, *args], capture_output=True, text=True, timeout=10, check=True
        ).stdout

    run("new-session", "-d", "-s", session, "-x", "120", "-y", "30")
    try:
        command = (
            f"GATEWAYCTL_API_KEY={KEY} NO_PROXY=127.0.0.1 {sys.executable} -m gatewayctl top "
            f"--gateway-uri {gateway.url} --interval 0.3"
        )
        run("send-keys", "-t", session, command, "Enter")
        screen = lambda: run("capture-pane", "-p", "-t", session)  # noqa: E731
        wait_until(lambda: "BREAKER" in screen() and "idle" in screen(), 30, message="the live view drawn")
        assert "gatewayctl top" in screen() and "up 0" in screen()
        with httpx.Client(trust_env=False, timeout=10, headers={"authorization": f"Bearer {KEY}"}) as client:
            deadline = time.monotonic() + 30
            # Keep traffic going until a refresh shows a rate for chat (the view changes on its own).
            while _rps(screen(), "chat") in (None, "0.0"):
                assert time.monotonic() < deadline, screen()
                client.post(f"{gateway.url}/gateway/chat/invocations", json=CHAT)
        run("send-keys", "-t", session, "C-c", "")
        wait_until(
            lambda: "$" in screen().rstrip().splitlines()[-1] or "#" in screen().rstrip().splitlines()[-1],
            10,
            message="top exited on Ctrl-C",
        )
        assert "Traceback" not in screen()
    finally:
        subprocess.run([tmux, "-S", socket, "kill-server"], capture_output=True, timeout=10, check=False)


def test_view_rates_and_quantiles_from_two_snapshots() -> None:
    bounds = [0.01, 0.1, 1.0]

    def snap(t: float, requests: int, errors: int, tokens: int, counts: list[float]) -> dict:
        route = {
            "requests": requests,
            "errors": errors,
            "tokens": {"prompt": tokens, "completion": tokens},
            "duration": [*counts, 0.0],
            "in_flight": 1,
            "breaker": "open",
        }
        return {"time": t, "uptime_seconds": t, "buckets": bounds, "routes": {"r": route}}

    data = view(snap(12.0, 30, 3, 100, [10, 20, 0, 0]), snap(10.0, 10, 1, 60, [10, 0, 0, 0]))
    route = data["routes"]["r"]
    assert route["rps"] == 10.0 and route["error_rate"] == 0.1 and route["tokens_per_second"] == 40.0
    assert route["p50_ms"] == pytest.approx(55.0)  # the interval's 20 requests, all in (10 ms, 100 ms]
    assert route["breaker"] == "open" and data["totals"]["in_flight"] == 1
    assert quantile([0, 0, 0, 5], bounds, 0.99) == 1.0  # +Inf bucket: the highest bound
