"""``gatewayctl routes create/delete`` against a real gateway that has an admin key."""

from __future__ import annotations

import json
from collections.abc import Callable

from cli_helpers import ADMIN_KEY
from typer.testing import Result

Cli = Callable[..., Result]


def test_create_query_delete_round_trip(cli: Cli, admin_gateway_url: str) -> None:
    env = {"MLFLOW_GATEWAY_URI": admin_gateway_url, "GATEWAYCTL_API_KEY": ADMIN_KEY}
    created = cli(
        "routes", "create", "extra", "--route-type", "llm/v1/completions", "--provider", "fake",
        "--model", "fake-completions", "--config", "reply_prefix=Extra says:", "-o", "json", env=env,
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    assert json.loads(created.stdout)["data"]["route_url"] == f"{admin_gateway_url}/gateway/extra/invocations"

    listed = cli("routes", "list", "-o", "json", env=env)
    assert [route["name"] for route in json.loads(listed.stdout)["data"]] == [
        "chat",
        "completions",
        "embeddings",
        "extra",
    ]
    answered = cli("query", "extra", "-p", "hi", env=env)
    assert answered.stdout == "Extra says: hi\n"

    deleted = cli("routes", "delete", "extra", "--yes", env=env)
    assert deleted.exit_code == 0, deleted.output
    gone = cli("routes", "get", "extra", env=env)
    assert gone.exit_code == 4


def test_create_without_a_key_exits_4_with_a_hint(cli: Cli, admin_gateway_url: str) -> None:
    result = cli(
        "routes", "create", "x", "--route-type", "llm/v1/chat", "--provider", "fake", "--model", "m",
        "--gateway-uri", admin_gateway_url,
    )  # fmt: skip
    assert result.exit_code == 4
    assert "--api-key" in result.stderr


def test_invalid_route_definition_exits_3_with_the_server_issues(cli: Cli, admin_gateway_url: str) -> None:
    result = cli(
        "routes", "create", "x", "--route-type", "llm/v1/chat", "--provider", "no-such-provider", "--model", "m",
        "--gateway-uri", admin_gateway_url, "--api-key", ADMIN_KEY,
    )  # fmt: skip
    assert result.exit_code == 3
    lines = result.stderr.splitlines()
    assert lines[0].startswith("<request>: route 'x': model.provider: unknown provider 'no-such-provider'")
    assert lines[-1] == "error: invalid configuration (1 problem)"


def test_duplicate_route_exits_4(cli: Cli, admin_gateway_url: str) -> None:
    result = cli(
        "routes", "create", "chat", "--route-type", "llm/v1/chat", "--provider", "fake", "--model", "m",
        "--gateway-uri", admin_gateway_url, "--api-key", ADMIN_KEY,
    )  # fmt: skip
    assert result.exit_code == 4
    assert "already exists" in result.stderr
