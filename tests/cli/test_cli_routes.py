"""``gatewayctl routes``: against a real gateway in a thread, and wire details through a MockTransport."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from cli_helpers import flat
from typer.testing import Result

from gatewayctl import GatewayClient

Cli = Callable[..., Result]


def test_list_shows_a_table_of_every_route(cli: Cli, gateway_url: str) -> None:
    result = cli("routes", "list", "--gateway-uri", gateway_url)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["NAME", "TYPE", "PROVIDER", "MODEL"]
    assert [line.split() for line in lines[1:]] == [
        ["chat", "llm/v1/chat", "fake", "fake-chat"],
        ["completions", "llm/v1/completions", "fake", "fake-completions"],
        ["embeddings", "llm/v1/embeddings", "fake", "fake-embeddings"],
    ]


def test_list_json_is_an_envelope_with_absolute_urls(cli: Cli, gateway_url: str) -> None:
    result = cli("routes", "list", "-o", "json", env={"MLFLOW_GATEWAY_URI": gateway_url})
    assert result.exit_code == 0, result.output
    envelope = json.loads(result.stdout)
    assert envelope["version"] == 1
    assert [route["name"] for route in envelope["data"]] == ["chat", "completions", "embeddings"]
    assert envelope["data"][0] == {
        "name": "chat",
        "route_type": "llm/v1/chat",
        "model": {"name": "fake-chat", "provider": "fake"},
        "route_url": f"{gateway_url}/gateway/chat/invocations",
        "limit": None,
    }


def test_get_shows_one_route(cli: Cli, gateway_url: str) -> None:
    result = cli("routes", "get", "embeddings", "--gateway-uri", gateway_url)
    assert result.exit_code == 0, result.output
    rows = dict(re.split(r"\s{2,}", line.strip(), maxsplit=1) for line in result.stdout.splitlines())
    assert rows == {
        "name": "embeddings",
        "route type": "llm/v1/embeddings",
        "provider": "fake",
        "model": "fake-embeddings",
        "url": f"{gateway_url}/gateway/embeddings/invocations",
    }


def test_get_json(cli: Cli, gateway_url: str) -> None:
    result = cli("routes", "get", "chat", "-o", "json", "--gateway-uri", gateway_url)
    assert json.loads(result.stdout)["data"]["route_url"] == f"{gateway_url}/gateway/chat/invocations"


def test_get_unknown_route_exits_4_with_the_server_message(cli: Cli, gateway_url: str) -> None:
    result = cli("routes", "get", "nope", "--gateway-uri", gateway_url)
    assert result.exit_code == 4
    assert "The route 'nope' is not present or active on the server" in result.stderr
    assert result.stdout == ""


class FakeAdmin:
    """Answers create/delete like our server; records what the CLI sent."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        if request.method == "DELETE":
            return httpx.Response(200, json={})
        body = json.loads(request.content)
        route = {
            "name": body["name"],
            "route_type": body["route_type"],
            "model": {"name": body["model"]["name"], "provider": body["model"]["provider"]},
            "route_url": f"/gateway/{body['name']}/invocations",
        }
        return httpx.Response(200, json=route)

    def body(self) -> Any:
        return json.loads(self.requests[-1].content)


@pytest.fixture
def admin(monkeypatch: pytest.MonkeyPatch) -> FakeAdmin:
    fake = FakeAdmin()

    def make_client(gateway_uri: str | None, api_key: str | None, timeout: float = 1.0) -> GatewayClient:
        return GatewayClient(gateway_uri, api_key=api_key, transport=httpx.MockTransport(fake))

    monkeypatch.setattr("gatewayctl.cli.routes.make_client", make_client)
    return fake


def test_create_from_options(cli: Cli, admin: FakeAdmin) -> None:
    result = cli(
        "routes", "create", "gpt", "--route-type", "llm/v1/chat", "--provider", "openai", "--model", "gpt-4o-mini",
        "--config", "openai_api_key=$OPENAI_API_KEY", "--config", "openai_api_version=2024-02-01",
        "--gateway-uri", "http://gw.test", "--api-key", "admin-key",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert admin.body() == {
        "name": "gpt",
        "route_type": "llm/v1/chat",
        "model": {
            "name": "gpt-4o-mini",
            "provider": "openai",
            "config": {"openai_api_key": "$OPENAI_API_KEY", "openai_api_version": "2024-02-01"},
        },
    }
    assert admin.requests[-1].headers["authorization"] == "Bearer admin-key"
    assert "Created route 'gpt'." in result.stderr
    assert "http://gw.test/gateway/gpt/invocations" in result.stdout


def test_config_values_keep_their_types(cli: Cli, admin: FakeAdmin) -> None:
    result = cli(
        "routes", "create", "gpt", "--route-type", "llm/v1/chat", "--provider", "openai", "--model", "m",
        "--config", "max_tokens=256", "--config", "temperature=0.5", "--config", "stream=true",
        "--config", "stop=null", "--config", 'version="2024"', "--config", "name=plain text",
        "--config", "nan=NaN", "--gateway-uri", "http://gw.test",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert admin.body()["model"]["config"] == {
        "max_tokens": 256,
        "temperature": 0.5,
        "stream": True,
        "stop": None,
        "version": "2024",  # quoted: stays text
        "name": "plain text",
        "nan": "NaN",
    }
    assert "warning" not in result.stderr


@pytest.mark.parametrize("key", ["openai_api_key", "aws_secret_access_key", "hf_token", "password"])
def test_a_literal_secret_on_the_command_line_warns(cli: Cli, admin: FakeAdmin, key: str) -> None:
    args = ["routes", "create", "gpt", "--route-type", "llm/v1/chat", "--provider", "openai", "--model", "m"]
    result = cli(*args, "--config", f"{key}=sk-typed-in-123", "--gateway-uri", "http://gw.test")
    assert result.exit_code == 0, result.output
    warning = flat(result.stderr)
    assert f"warning: --config {key}: a literal secret on the command line" in warning
    assert "--credentials NAME" in warning
    assert "sk-typed-in-123" not in result.output
    quiet = cli(*args, "--config", f"{key}=${key.upper()}", "--gateway-uri", "http://gw.test")
    assert "warning" not in quiet.stderr


def test_create_from_file(cli: Cli, admin: FakeAdmin, tmp_path: Path) -> None:
    path = tmp_path / "route.yaml"
    path.write_text(
        "name: emb\nroute_type: llm/v1/embeddings\nmodel: {provider: fake, name: fake-emb, config: {}}\n",
        encoding="utf-8",
    )
    result = cli(
        "routes", "create", "--from-file", str(path), "-o", "json", "--gateway-uri", "http://gw.test"
    )
    assert result.exit_code == 0, result.output
    assert admin.body() == {
        "name": "emb",
        "route_type": "llm/v1/embeddings",
        "model": {"provider": "fake", "name": "fake-emb", "config": {}},
    }
    assert json.loads(result.stdout)["data"]["route_url"] == "http://gw.test/gateway/emb/invocations"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["x", "--provider", "openai"], "missing --route-type, --model"),
        (["--route-type", "llm/v1/chat", "--provider", "p", "--model", "m"], "missing NAME"),
        (
            ["x", "--route-type", "llm/v1/chat", "--provider", "p", "--model", "m", "--config", "novalue"],
            "KEY=VALUE",
        ),
        (["x", "--route-type", "llm/v1/images"], "llm/v1/images"),
    ],
)
def test_create_usage_errors_exit_2_without_a_request(
    cli: Cli, admin: FakeAdmin, args: list[str], message: str
) -> None:
    result = cli("routes", "create", *args, "--gateway-uri", "http://gw.test")
    assert result.exit_code == 2
    assert message in flat(result.stderr)
    assert admin.requests == []


def test_create_from_file_cannot_be_mixed_with_options(cli: Cli, admin: FakeAdmin, tmp_path: Path) -> None:
    path = tmp_path / "route.yaml"
    path.write_text("route_type: llm/v1/chat\nmodel: {provider: fake}\n", encoding="utf-8")
    result = cli(
        "routes", "create", "x", "--from-file", str(path), "--provider", "p", "--gateway-uri", "http://gw"
    )
    assert result.exit_code == 2
    assert "--from-file cannot be combined" in flat(result.stderr)
    assert admin.requests == []


@pytest.mark.parametrize(
    ("content", "message", "code"),
    [
        ("routes: [\n  broken", "not valid YAML", 3),
        ("- just\n- a list\n", "expected a mapping", 3),
        ("name: x\nmodel: {provider: fake}\n", "missing route_type", 3),
        ("name: other\nroute_type: llm/v1/chat\nmodel: {provider: fake}\n", "differs from name 'other'", 2),
    ],
)
def test_create_from_a_bad_file(
    cli: Cli, admin: FakeAdmin, tmp_path: Path, content: str, message: str, code: int
) -> None:
    path = tmp_path / "route.yaml"
    path.write_text(content, encoding="utf-8")
    result = cli("routes", "create", "x", "--from-file", str(path), "--gateway-uri", "http://gw.test")
    assert result.exit_code == code
    assert message in flat(result.stderr)
    assert admin.requests == []


def test_delete_with_yes(cli: Cli, admin: FakeAdmin) -> None:
    result = cli("routes", "delete", "old", "--yes", "--gateway-uri", "http://gw.test")
    assert result.exit_code == 0, result.output
    assert [(r.method, r.url.path) for r in admin.requests] == [("DELETE", "/api/2.0/gateway/routes/old")]
    assert "Deleted route 'old'." in result.stderr


def test_delete_asks_first_and_a_no_sends_nothing(cli: Cli, admin: FakeAdmin) -> None:
    result = cli("routes", "delete", "old", "--gateway-uri", "http://gw.test", input="n\n")
    assert result.exit_code == 1
    assert "Delete route 'old' from http://gw.test?" in result.stderr
    assert admin.requests == []
    confirmed = cli("routes", "delete", "old", "-o", "json", "--gateway-uri", "http://gw.test", input="y\n")
    assert confirmed.exit_code == 0
    # CliRunner echoes the typed answer to stdout; a terminal would not
    assert json.loads(confirmed.stdout[confirmed.stdout.index("{") :]) == {
        "version": 1,
        "data": {"deleted": "old"},
    }
    assert len(admin.requests) == 1
