"""``gatewayctl routes create/delete`` against a real gateway that has an admin key."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from cli_helpers import ADMIN_KEY
from typer.testing import Result

from gateway_server.routes import Route
from gatewayctl import AsyncGatewayClient, GatewayClient

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


WHOLE_ENTRY = """\
name: split
route_type: llm/v1/chat
models:
  - {provider: fake, name: fake-a, config: {}, weight: 3}
  - {provider: fake, name: fake-b, config: {}, weight: 1}
fallbacks:
  - {provider: fake, name: fake-fallback, config: {}}
retry: {attempts: 2, backoff: 0.1}
timeout: 12.5
limit: {calls: 5, renewal_period: minute}
"""


def test_create_from_file_sends_the_whole_entry(cli: Cli, admin_gateway_url: str, tmp_path: Path) -> None:
    route_file = tmp_path / "route.yaml"
    route_file.write_text(WHOLE_ENTRY, encoding="utf-8")
    env = {"MLFLOW_GATEWAY_URI": admin_gateway_url, "GATEWAYCTL_API_KEY": ADMIN_KEY}
    created = cli("routes", "create", "--from-file", str(route_file), "-o", "json", env=env)
    assert created.exit_code == 0, created.output
    assert json.loads(created.stdout)["data"]["limit"]["calls"] == 5
    saved = yaml.safe_load((tmp_path / "gateway.yaml").read_text(encoding="utf-8"))  # the gateway's file
    entry = next(route for route in saved["routes"] if route["name"] == "split")
    assert entry == yaml.safe_load(WHOLE_ENTRY)  # fallbacks, retry, timeout, limit and the split, as written
    assert cli("query", "split", "-p", "hi", env=env).exit_code == 0


@pytest.mark.parametrize("use_async", [False, True])
def test_both_python_clients_create_a_route_from_one_definition(
    admin_gateway_url: str, tmp_path: Path, use_async: bool
) -> None:
    definition = yaml.safe_load(WHOLE_ENTRY)
    if use_async:

        async def create() -> Route:
            async with AsyncGatewayClient(admin_gateway_url, api_key=ADMIN_KEY) as client:
                return await client.create_route(definition)

        route = asyncio.run(create())
    else:
        with GatewayClient(admin_gateway_url, api_key=ADMIN_KEY) as client:
            route = client.create_route(definition)
    assert route.name == "split" and route.limit is not None and route.limit.calls == 5
    saved = yaml.safe_load((tmp_path / "gateway.yaml").read_text(encoding="utf-8"))
    assert next(r for r in saved["routes"] if r["name"] == "split") == definition
