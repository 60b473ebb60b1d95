"""The root command: --help documents the exit codes, --version, and one error-to-exit-code mapping."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Callable

import httpx
import pytest
from typer.testing import Result

from gateway_server.errors import (
    AuthenticationError,
    ConfigError,
    GatewayError,
    InvalidRequestError,
    RateLimitError,
    RouteNotFoundError,
    UnsupportedRouteTypeError,
    UpstreamStatusError,
    UpstreamTimeoutError,
)
from gatewayctl import (
    GatewayClient,
    GatewayTimeoutError,
    GatewayUnreachableError,
    GatewayUriError,
    __version__,
)
from gatewayctl.cli.exit_codes import ExitCode, exit_code_for

Cli = Callable[..., Result]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_help_epilog_lists_every_exit_code(cli: Cli) -> None:
    result = cli("--help")
    assert result.exit_code == 0
    assert "Exit codes:" in result.stdout
    for code, meaning in [
        (0, "success"),
        (2, "usage error"),
        (3, "invalid configuration"),
        (4, "HTTP 4xx"),
        (5, "HTTP 5xx"),
        (6, "could not be reached"),
    ]:
        assert any(
            line.strip().startswith(f"{code}  ") and meaning in line for line in result.stdout.splitlines()
        )
    for command in ("validate", "serve", "routes", "query"):
        assert command in result.stdout


def test_version(cli: Cli) -> None:
    result = cli("--version")
    assert result.exit_code == 0
    assert result.stdout == f"gatewayctl {__version__}\n"


def test_unknown_command_is_a_usage_error(cli: Cli) -> None:
    result = cli("rouets")
    assert result.exit_code == ExitCode.USAGE
    assert "routes" in result.stderr  # did you mean


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ConfigError("bad"), ExitCode.INVALID_CONFIG),
        (GatewayUriError("no uri"), ExitCode.USAGE),
        (InvalidRequestError("bad body"), ExitCode.GATEWAY_CLIENT_ERROR),
        (AuthenticationError("no key"), ExitCode.GATEWAY_CLIENT_ERROR),
        (RouteNotFoundError("x"), ExitCode.GATEWAY_CLIENT_ERROR),
        (RateLimitError("slow"), ExitCode.GATEWAY_CLIENT_ERROR),
        (UnsupportedRouteTypeError("fake", "llm/v1/chat"), ExitCode.GATEWAY_SERVER_ERROR),
        (
            UpstreamStatusError(provider="openai", upstream_status=500, reason="boom"),
            ExitCode.GATEWAY_SERVER_ERROR,
        ),
        (UpstreamTimeoutError("slow upstream"), ExitCode.GATEWAY_SERVER_ERROR),
        (GatewayError("generic server failure"), ExitCode.GATEWAY_SERVER_ERROR),
        (GatewayError("odd answer", status_code=200), ExitCode.FAILURE),
        (GatewayUnreachableError("refused"), ExitCode.UNREACHABLE),
        (GatewayTimeoutError("slow gateway"), ExitCode.UNREACHABLE),
        (RuntimeError("bug"), ExitCode.FAILURE),
    ],
)
def test_exit_code_for_each_error_class(error: BaseException, code: ExitCode) -> None:
    assert exit_code_for(error) == code


def test_unreachable_gateway_exits_6_without_traceback(cli: Cli) -> None:
    result = cli("routes", "list", "--gateway-uri", f"http://127.0.0.1:{closed_port()}")
    assert result.exit_code == ExitCode.UNREACHABLE
    assert "error: Could not reach the gateway" in result.stderr
    assert "Is the gateway running" in result.stderr
    assert "Traceback" not in result.output
    assert result.stdout == ""


def test_debug_shows_the_traceback_and_keeps_the_exit_code(cli: Cli) -> None:
    result = cli("--debug", "routes", "list", "--gateway-uri", f"http://127.0.0.1:{closed_port()}")
    assert result.exit_code == ExitCode.UNREACHABLE
    assert "Traceback" in result.stderr
    assert "error: Could not reach the gateway" in result.stderr


def test_missing_gateway_uri_is_a_usage_error_naming_the_option_and_the_variable(cli: Cli) -> None:
    result = cli("routes", "list")
    assert result.exit_code == ExitCode.USAGE
    assert "error: No gateway URI: pass --gateway-uri URI or set MLFLOW_GATEWAY_URI" in result.stderr
    assert "set_gateway_uri" not in result.stderr  # a Python function means nothing in a shell
    assert result.stderr.count("--gateway-uri") == 1  # said once, not again as a hint


def test_gateway_uri_comes_from_the_environment(cli: Cli) -> None:
    port = closed_port()
    result = cli("routes", "list", env={"MLFLOW_GATEWAY_URI": f"http://127.0.0.1:{port}"})
    assert result.exit_code == ExitCode.UNREACHABLE
    assert f"127.0.0.1:{port}" in result.stderr


def test_gateway_5xx_exits_5(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    def reply(request: httpx.Request) -> httpx.Response:
        message = "openai returned HTTP 500: overloaded"
        return httpx.Response(
            502, json={"error": {"message": message, "type": "upstream_status_error", "code": 502}}
        )

    def make_client(gateway_uri: str | None, api_key: str | None, timeout: float = 1.0) -> GatewayClient:
        return GatewayClient(gateway_uri, api_key=api_key, transport=httpx.MockTransport(reply))

    monkeypatch.setattr("gatewayctl.cli.query.make_client", make_client)
    result = cli("query", "chat", "--data", '{"messages": []}', "--gateway-uri", "http://gw.test")
    assert result.exit_code == ExitCode.GATEWAY_SERVER_ERROR
    assert "error: openai returned HTTP 500: overloaded" in result.stderr


def test_unexpected_error_exits_1_and_points_at_debug(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> GatewayClient:
        raise RuntimeError("a bug")

    monkeypatch.setattr("gatewayctl.cli.routes.make_client", broken)
    result = cli("routes", "list")
    assert result.exit_code == ExitCode.FAILURE
    assert "unexpected RuntimeError: a bug" in result.stderr
    assert "--debug" in result.stderr
    assert "Traceback" not in result.output


def test_markup_in_server_messages_is_printed_verbatim(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    def reply(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"detail": "no route '[bold]x[/bold]'"})

    def make_client(gateway_uri: str | None, api_key: str | None, timeout: float = 1.0) -> GatewayClient:
        return GatewayClient(gateway_uri, transport=httpx.MockTransport(reply))

    monkeypatch.setattr("gatewayctl.cli.routes.make_client", make_client)
    result = cli("routes", "get", "x", "--gateway-uri", "http://gw.test")
    assert result.exit_code == ExitCode.GATEWAY_CLIENT_ERROR
    assert "no route '[bold]x[/bold]'" in result.stderr


def test_python_m_gatewayctl_runs_the_cli() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gatewayctl", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0
    assert result.stdout.strip() == f"gatewayctl {__version__}"


def test_cli_import_does_not_load_the_server_stack() -> None:
    code = (
        "import sys, gatewayctl.cli.app\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'fastapi', 'uvicorn', 'starlette', 'aiohttp'}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]"
