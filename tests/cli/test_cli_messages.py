"""Messages that match the situation: key hints only where a key helps, a timeout said as one, 429s
with their retry time exactly once, and errors as JSON on stderr under ``-o json``.

Real gateways (``create_app`` served on 127.0.0.1) with the offline ``fake`` provider and the fake
OpenAI upstream; a silent socket for the timeout.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import Result

from gateway_server.app import create_app
from gateway_server.config import load_config
from gateway_server.testing import serve_in_thread
from gateway_server.testing.fake_openai import FakeOpenAI
from gateway_server.testing.fake_upstreams import Fault
from gatewayctl.cli.exit_codes import ExitCode

Cli = Callable[..., Result]
UPSTREAM_KEY = "sk-cli-messages-test"


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(api_key=UPSTREAM_KEY).serve() as fake:
        yield fake


@pytest.fixture
def gateway(tmp_path: Path, upstream: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("CLI_MESSAGES_OPENAI_KEY", UPSTREAM_KEY)
    path = tmp_path / "gateway.yaml"
    path.write_text(
        f"""\
routes:
  - name: limited
    route_type: llm/v1/chat
    model: {{provider: fake, name: fake-chat, config: {{}}}}
    limit: {{calls: 1, renewal_period: minute}}
  - name: openai
    route_type: llm/v1/chat
    model:
      provider: openai
      name: gpt-4o-mini
      config: {{openai_api_key: $CLI_MESSAGES_OPENAI_KEY, openai_api_base: {upstream.api_base}}}
""",
        encoding="utf-8",
    )
    upstream.reset()
    with serve_in_thread(create_app(load_config(path))) as server:
        yield server.url


@pytest.fixture
def silent_gateway() -> Iterator[str]:
    """Accepts connections and reads, never answers (a gateway stuck on a slow route)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        held: list[socket.socket] = []
        stop = threading.Event()

        def accept() -> None:
            listener.settimeout(0.05)
            while not stop.is_set():
                try:
                    held.append(listener.accept()[0])
                except TimeoutError:
                    continue

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
        stop.set()
        thread.join(timeout=5)
        for conn in held:
            conn.close()


def test_no_key_hint_from_a_gateway_without_keys(cli: Cli, gateway_url: str) -> None:
    result = cli(
        "routes", "create", "x", "--route-type", "llm/v1/chat", "--provider", "fake", "--model", "m",
        "--gateway-uri", gateway_url,
    )  # fmt: skip
    assert result.exit_code == ExitCode.GATEWAY_CLIENT_ERROR
    assert "has no 'auth:' section" in result.stderr  # the server's own explanation
    assert "--api-key" not in result.stderr  # no key could help here


def test_key_hint_from_a_gateway_with_keys(cli: Cli, admin_gateway_url: str) -> None:
    result = cli("routes", "delete", "chat", "--yes", "--gateway-uri", admin_gateway_url)
    assert result.exit_code == ExitCode.GATEWAY_CLIENT_ERROR
    assert "Pass a gateway key with --api-key or GATEWAYCTL_API_KEY." in result.stderr


def test_a_timeout_says_the_gateway_did_not_answer_in_n_seconds(cli: Cli, silent_gateway: str) -> None:
    result = cli("routes", "list", "--timeout", "0.3", "--gateway-uri", silent_gateway)
    assert result.exit_code == ExitCode.UNREACHABLE
    assert "did not answer" in result.stderr and "within 0.3 s" in result.stderr
    assert "Is the gateway running" not in result.stderr  # it is: it took the connection
    assert "--timeout" in result.stderr


def test_an_upstream_429_keeps_its_retry_hint(cli: Cli, gateway: str, upstream: FakeOpenAI) -> None:
    upstream.inject(Fault.rate_limited(retry_after=7))
    result = cli("query", "openai", "-p", "hi", "--gateway-uri", gateway)
    assert result.exit_code == ExitCode.GATEWAY_CLIENT_ERROR
    assert "error: openai returned HTTP 429" in result.stderr
    assert "Retry after 7 s." in result.stderr


def test_the_gateways_own_429_gives_the_retry_time_once(cli: Cli, gateway: str) -> None:
    assert cli("query", "limited", "-p", "hi", "--gateway-uri", gateway).exit_code == 0
    result = cli("query", "limited", "-p", "hi", "--gateway-uri", gateway)
    assert result.exit_code == ExitCode.GATEWAY_CLIENT_ERROR
    assert "Rate limit exceeded" in result.stderr
    assert result.stderr.lower().count("retry") == 1, result.stderr


def test_errors_are_json_on_stderr_under_output_json(cli: Cli, gateway: str) -> None:
    result = cli("routes", "get", "nope", "-o", "json", "--gateway-uri", gateway)
    assert result.exit_code == ExitCode.GATEWAY_CLIENT_ERROR
    assert result.stdout == ""
    error = json.loads(result.stderr)["error"]
    assert error["exit_code"] == ExitCode.GATEWAY_CLIENT_ERROR
    assert error["status"] == 404 and "nope" in error["message"]

    assert cli("query", "limited", "-p", "hi", "--gateway-uri", gateway).exit_code == 0
    limited = cli("query", "limited", "-p", "hi", "--output=json", "--gateway-uri", gateway)
    error = json.loads(limited.stderr)["error"]
    assert (error["status"], error["exit_code"], error["type"]) == (429, 4, "rate_limit_error")
    assert error["retry_after"] >= 1


def test_unreachable_and_usage_errors_are_json_too(cli: Cli) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    down = cli("routes", "list", "-o", "json", "--gateway-uri", f"http://127.0.0.1:{port}")
    assert down.exit_code == ExitCode.UNREACHABLE
    assert json.loads(down.stderr)["error"]["type"] == "gateway_unreachable"
    assert "Is the gateway running" in json.loads(down.stderr)["error"]["hint"]

    usage = cli("query", "chat", "--prompt", "a", "--text", "b", "-o", "json", "--gateway-uri", "http://x")
    assert usage.exit_code == ExitCode.USAGE
    assert json.loads(usage.stderr)["error"]["type"] == "usage_error"
