"""``gatewayctl serve``: validates first (exit 3 on a bad config), --check stops there, options reach the runner."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import FAKE_CONFIG
from typer.testing import Result

from gateway_server.errors import ConfigError, ConfigIssue
from gateway_server.server_limits import ServerLimits

Cli = Callable[..., Result]


@pytest.fixture
def config_path(tmp_path: Path) -> str:
    path = tmp_path / "gateway.yaml"
    path.write_text(FAKE_CONFIG, encoding="utf-8")
    return str(path)


@pytest.fixture
def runner_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    calls: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr("gateway_server.runner.run", lambda path, **options: calls.append((path, options)))
    return calls


def test_check_validates_and_does_not_serve(
    cli: Cli, config_path: str, runner_calls: list[tuple[str, dict[str, Any]]]
) -> None:
    result = cli("serve", config_path, "--check")
    assert result.exit_code == 0, result.output
    assert f"{config_path}: OK (3 routes); not serving (--check)." in result.stderr
    assert runner_calls == []


def test_check_on_a_bad_config_lists_the_problems_and_exits_3(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("routes:\n  - name: x\n    route_typ: llm/v1/chat\n", encoding="utf-8")
    result = cli("serve", str(path), "--check")
    assert result.exit_code == 3
    assert f"{path}:3: route 'x': route_typ: unknown key 'route_typ'" in result.stderr
    assert "error: invalid configuration" in result.stderr
    assert "Traceback" not in result.output


def test_serve_passes_every_option_to_the_runner(
    cli: Cli, config_path: str, runner_calls: list[tuple[str, dict[str, Any]]]
) -> None:
    result = cli(
        "serve", config_path, "--host", "0.0.0.0", "--port", "8123", "--workers", "3",
        "--allow-unauthenticated-admin", "--graceful-timeout", "5", "--no-access-log",
        "--forwarded-allow-ips", "10.0.0.5,10.0.1.0/24", "--log-level", "DEBUG", "--log-format", "json",
        "--max-header-bytes", "4096", "--max-headers", "20", "--header-timeout", "2",
        "--body-timeout", "3", "--keep-alive-timeout", "4", "--limit-concurrency", "50",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert runner_calls == [
        (
            config_path,
            {
                "host": "0.0.0.0",
                "port": 8123,
                "workers": 3,
                "allow_unauthenticated_admin": True,
                "graceful_timeout": 5.0,
                "access_log": False,
                "forwarded_allow_ips": "10.0.0.5,10.0.1.0/24",
                "log_level": "debug",
                "log_format": "json",
                "limits": ServerLimits(
                    max_header_bytes=4096,
                    max_headers=20,
                    header_timeout=2.0,
                    body_timeout=3.0,
                    keep_alive_timeout=4.0,
                    limit_concurrency=50,
                ),
            },
        )
    ]


def test_config_path_option_and_mlflow_variable(
    cli: Cli, config_path: str, runner_calls: list[tuple[str, dict[str, Any]]], tmp_path: Path
) -> None:
    assert cli("serve", "--config-path", config_path).exit_code == 0
    assert cli("serve", config_path, "--config-path", config_path).exit_code == 0  # same file twice: fine
    assert cli("serve", env={"MLFLOW_GATEWAY_CONFIG": config_path}).exit_code == 0
    assert [path for path, _ in runner_calls] == [config_path] * 3
    other = tmp_path / "other.yaml"
    other.write_text(FAKE_CONFIG, encoding="utf-8")
    # The command line wins over the variable, as MLflow's click option does.
    assert cli("serve", str(other), env={"MLFLOW_GATEWAY_CONFIG": config_path}).exit_code == 0
    assert runner_calls[-1][0] == str(other)


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        ([], {}, "give the config file as CONFIG or --config-path, or set MLFLOW_GATEWAY_CONFIG"),
        (["a.yaml", "--config-path", "b.yaml"], {}, "differ; give one"),
        (
            [],
            {"MLFLOW_GATEWAY_CONFIG": "/nonexistent/gw.yaml"},
            "MLFLOW_GATEWAY_CONFIG: file '/nonexistent/gw.yaml' does not exist",
        ),
    ],
)
def test_config_file_usage_errors(
    cli: Cli,
    runner_calls: list[tuple[str, dict[str, Any]]],
    args: list[str],
    env: dict[str, str],
    message: str,
) -> None:
    result = cli("serve", *args, env={"MLFLOW_GATEWAY_CONFIG": "", **env})
    assert result.exit_code == 2
    assert message in " ".join(result.stderr.split())
    assert runner_calls == []


def test_host_and_port_default_as_mlflow_gateway_start() -> None:
    # `mlflow gateway start`: --host 127.0.0.1 (local only), --port 5000.
    from gatewayctl.cli.serve import DEFAULT_HOST, DEFAULT_PORT

    assert (DEFAULT_HOST, DEFAULT_PORT) == ("127.0.0.1", 5000)


def test_serve_defaults(cli: Cli, config_path: str, runner_calls: list[tuple[str, dict[str, Any]]]) -> None:
    assert cli("serve", config_path).exit_code == 0
    assert runner_calls[0][1] == {
        "host": "127.0.0.1",
        "port": 5000,
        "workers": 1,
        "allow_unauthenticated_admin": False,
        "graceful_timeout": 30.0,
        "access_log": True,  # one line per invocation (docs/observability.md)
        "forwarded_allow_ips": "",  # nobody's X-Forwarded-For is believed
        "log_level": "info",
        "log_format": "text",
        "limits": ServerLimits(),  # the documented defaults
    }


def test_a_config_error_from_the_runner_exits_3(
    cli: Cli, config_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def run(path: str, **options: Any) -> None:
        raise ConfigError(
            [ConfigIssue("environment variable 'K' is not set", path=path, line=2, route="chat")]
        )

    monkeypatch.setattr("gateway_server.runner.run", run)
    result = cli("serve", config_path)
    assert result.exit_code == 3
    assert f"{config_path}:2: route 'chat': environment variable 'K' is not set" in result.stderr


@pytest.mark.parametrize("args", [["--workers", "0"], ["--port", "70000"], ["--graceful-timeout", "-1"]])
def test_out_of_range_options_are_usage_errors(
    cli: Cli, config_path: str, runner_calls: list[tuple[str, dict[str, Any]]], args: list[str]
) -> None:
    assert cli("serve", config_path, *args).exit_code == 2
    assert runner_calls == []


def test_a_failed_uvicorn_start_up_exits_1_not_uvicorns_3(
    cli: Cli, config_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn

    async def failed_startup(self: object, sockets: object = None) -> None:
        sys.exit(3)  # what uvicorn does when the app's lifespan start-up fails

    monkeypatch.setattr(uvicorn.Server, "startup", failed_startup)
    monkeypatch.setenv("GATEWAYCTL_RELOAD_INTERVAL", "0")
    result = cli("serve", config_path, "--port", "0")
    assert result.exit_code == 1  # 3 would say "invalid configuration"
    assert "error: the server stopped while starting (uvicorn exit status 3)" in result.stderr
