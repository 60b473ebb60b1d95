"""The operator's view through a real ``gatewayctl serve --workers 2``: scrapes add up, token counters
equal what the clients were told, JSON access lines carry their fields and no secret, the request
id reaches the upstream, and the series of a deleted route go away.

Every request is sent on a new connection, so the kernel spreads them over both workers; the test
checks both workers answered (their pids are in the access lines).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway_server.testing import FakeOpenAI, wait_until
from gateway_server.testing.process import GatewayProcess

pytestmark = pytest.mark.e2e

UPSTREAM_KEY = "sk-upstream-secret-7d1f"
GATEWAY_KEY = "gw-client-secret-93ab"
ADMIN_KEY = "gw-admin-secret-11cd"
CHAT = {"messages": [{"role": "user", "content": "one two three four five six"}]}


def _config(fake: FakeOpenAI) -> str:
    host = fake.api_base.split("/")[2]  # routes created at run time may reach this upstream too
    return (
        f"server: {{allowed_upstream_hosts: ['{host}']}}\n"
        "auth:\n"
        "  keys:\n"
        "    - {name: team-a, key: $E2E_GATEWAY_KEY, scopes: [query]}\n"
        "    - {name: ops, key: $E2E_ADMIN_KEY, scopes: [query, admin]}\n"
        "routes:\n"
        "  - name: chat\n"
        "    route_type: llm/v1/chat\n"
        f"    model: {{provider: openai, name: gpt-4o-mini, config: {{openai_api_key: $E2E_UPSTREAM_KEY, "
        f"openai_api_base: '{fake.api_base}'}}}}\n"
    )


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(api_key=UPSTREAM_KEY).serve() as fake:
        yield fake


@pytest.fixture
def gateway(tmp_path: Path, fake_openai: FakeOpenAI) -> Iterator[GatewayProcess]:
    config = tmp_path / "gateway.yaml"
    config.write_text(_config(fake_openai), encoding="utf-8")
    env = {"E2E_GATEWAY_KEY": GATEWAY_KEY, "E2E_ADMIN_KEY": ADMIN_KEY, "E2E_UPSTREAM_KEY": UPSTREAM_KEY}
    with GatewayProcess(
        config, log_dir=tmp_path, env=env, args=["--workers", "2", "--log-format", "json"]
    ) as process:
        # /health answers once one worker is up; the tests need both to be serving (the kernel
        # can only spread connections over workers that are accepting).
        wait_until(
            lambda: process.stderr.count("Application startup complete.") >= 2, 10, message="both workers"
        )
        yield process


def _post(gateway: GatewayProcess, body: dict[str, object], **headers: str) -> httpx.Response:
    with httpx.Client(trust_env=False, timeout=10) as client:  # a new connection each time
        return client.post(
            f"{gateway.url}/v1/chat/completions",
            json={"model": "chat", **body},
            headers={"authorization": f"Bearer {GATEWAY_KEY}", **headers},
        )


def _scrape(gateway: GatewayProcess) -> str:
    with httpx.Client(trust_env=False, timeout=10) as client:
        response = client.get(f"{gateway.url}/metrics")
    assert response.status_code == 200
    return response.text


def _value(text: str, series: str) -> float:
    match = re.search(rf"^{re.escape(series)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def _access_lines(gateway: GatewayProcess) -> list[dict[str, object]]:
    lines = []
    for line in gateway.stderr.splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if record.get("logger") == "gateway_server.access":
                lines.append(record)
    return lines


def test_scrapes_add_up_and_tokens_match_what_clients_saw(gateway: GatewayProcess) -> None:
    prompt = completion = 0
    for index in range(20):
        response = _post(gateway, {**CHAT, "stream": index % 4 == 0})
        assert response.status_code == 200, response.text
        if index % 4 == 0:
            chunks = [
                json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: {")
            ]
            usage = next(chunk["usage"] for chunk in reversed(chunks) if chunk.get("usage"))
        else:
            usage = response.json()["usage"]
        prompt += usage["prompt_tokens"]
        completion += usage["completion_tokens"]

    series = 'gateway_requests_total{route="chat",status="200",key="team-a"}'
    wait_until(lambda: len(_access_lines(gateway)) >= 20, 5, message="20 access lines")
    pids = {line["pid"] for line in _access_lines(gateway)}
    assert len(pids) == 2, f"every request went to one worker ({pids}); the test proves nothing"
    for _ in range(6):  # whichever worker answers the scrape, it reports the whole server
        text = _scrape(gateway)
        assert _value(text, series) == 20, text
        assert (
            _value(
                text,
                'gateway_tokens_total{route="chat",provider="openai",model="gpt-4o-mini",kind="prompt",key="team-a"}',
            )
            == prompt
        )
        assert (
            _value(
                text,
                'gateway_tokens_total{route="chat",provider="openai",model="gpt-4o-mini",kind="completion",key="team-a"}',
            )
            == completion
        )
        assert _value(text, 'gateway_request_duration_seconds_count{route="chat"}') == 20
        assert _value(text, 'gateway_time_to_first_token_seconds_count{route="chat"}') == 5
        assert _value(text, 'gateway_in_flight_requests{route="chat"}') == 0
    assert UPSTREAM_KEY not in text and GATEWAY_KEY not in text


def test_access_lines_request_ids_and_no_secrets(gateway: GatewayProcess, fake_openai: FakeOpenAI) -> None:
    ok = _post(gateway, CHAT, **{"x-request-id": "client-id-42"})
    assert ok.status_code == 200 and ok.headers["x-request-id"] == "client-id-42"
    assert fake_openai.last_request.headers["x-request-id"] == "client-id-42"

    forged = _post(gateway, CHAT, **{"x-request-id": "bad id\twith spaces"})
    generated = forged.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    assert fake_openai.last_request.headers["x-request-id"] == generated

    missing = _post(gateway, {"model": "nope", **CHAT})
    assert missing.status_code == 404
    assert missing.json()["error"]["request_id"] == missing.headers["x-request-id"]

    wait_until(lambda: len(_access_lines(gateway)) >= 3, 5, message="3 access lines")
    lines = {line["request_id"]: line for line in _access_lines(gateway)}
    line = lines["client-id-42"]
    for field in (
        "ts",
        "level",
        "pid",
        "route",
        "family",
        "status",
        "total_ms",
        "overhead_ms",
        "prompt_tokens",
        "completion_tokens",
        "key",
        "provider",
        "model",
        "attempts",
        "fallback",
    ):
        assert field in line, field
    assert (line["route"], line["family"], line["status"], line["key"]) == ("chat", "v1", 200, "team-a")
    assert (line["provider"], line["model"], line["attempts"], line["fallback"]) == (
        "openai",
        "gpt-4o-mini",
        1,
        None,
    )
    assert line["prompt_tokens"] == ok.json()["usage"]["prompt_tokens"]
    assert lines[missing.headers["x-request-id"]]["status"] == 404
    output = gateway.output
    for secret in (UPSTREAM_KEY, GATEWAY_KEY, "one two three"):  # keys, and no body either
        assert secret not in output


def test_a_deleted_route_leaves_no_series(gateway: GatewayProcess, fake_openai: FakeOpenAI) -> None:
    admin = {"authorization": f"Bearer {ADMIN_KEY}"}
    base = len(_scrape(gateway).splitlines())
    with httpx.Client(trust_env=False, timeout=10, base_url=gateway.url, headers=admin) as client:
        for index in range(5):
            name = f"temp-{index}"
            body = {
                "name": name,
                "route_type": "llm/v1/chat",
                "model": {
                    "provider": "openai",
                    "name": "gpt-4o-mini",
                    "config": {
                        "openai_api_key": UPSTREAM_KEY,  # a created route may not use $ENV
                        "openai_api_base": fake_openai.api_base,
                    },
                },
            }
            created = client.post("/api/2.0/gateway/routes/", json=body)
            assert created.status_code == 200, created.text
            wait_until(
                lambda name=name: client.post(f"/gateway/{name}/invocations", json=CHAT).status_code == 200,
                10,
                message=f"{name} served",
            )
            wait_until(lambda name=name: f'route="{name}"' in _scrape(gateway), 10, message=f"{name} scraped")
            assert client.delete(f"/api/2.0/gateway/routes/{name}").status_code == 200
    wait_until(lambda: "temp-" not in _scrape(gateway), 10, message="series of deleted routes gone")
    assert len(_scrape(gateway).splitlines()) <= base + 20  # the route-less 404s of the polls at most
