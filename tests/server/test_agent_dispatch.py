"""The agent paths go through the same dispatcher and reliability plan as every invocation: a
route that falls back from Anthropic (passed through) to OpenAI (translated) serves both ways in
one call, rate-limit headers and metrics cover them, and a failed call answers the protocol's
error shape."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from gateway_server.app import create_app
from gateway_server.config import parse_config
from gateway_server.testing import FakeOpenAI, Fault, serve_in_thread
from gateway_server.testing.fake_anthropic import FakeAnthropic

HELLO = {"max_tokens": 20, "messages": [{"role": "user", "content": "hello there"}]}


@pytest.fixture(scope="module")
def setup() -> Iterator[tuple[FakeOpenAI, FakeAnthropic, httpx.Client]]:
    with FakeOpenAI().serve() as o, FakeAnthropic().serve() as a:
        claude = f"{{provider: anthropic, name: claude-x, config: {{anthropic_api_key: k, anthropic_api_base: '{a.api_base}'}}}}"
        gpt = f"{{provider: openai, name: gpt-4.1, config: {{openai_api_key: k, openai_api_base: '{o.api_base}'}}}}"
        config = parse_config(
            f"""
routes:
  - name: agent
    route_type: llm/v1/chat
    model: {claude}
    fallbacks: [{gpt}]
    limit: {{calls: 100, renewal_period: minute}}
"""
        )
        with (
            serve_in_thread(create_app(config)) as server,
            httpx.Client(base_url=server.url, timeout=20) as client,
        ):
            yield o, a, client


@pytest.mark.parametrize("stream", [False, True])
def test_fallback_from_native_to_translated(
    setup: tuple[FakeOpenAI, FakeAnthropic, httpx.Client], stream: bool
) -> None:
    fake_openai, fake_anthropic, client = setup
    fake_openai.reset()
    fake_anthropic.reset()
    fake_anthropic.inject(Fault.error(529))  # Anthropic overloaded: the fallback serves
    response = client.post("/v1/messages", json={**HELLO, "model": "agent", "stream": stream})
    assert response.status_code == 200, response.text
    assert response.headers["x-gateway-model"] == "openai/gpt-4.1"
    assert any(key.lower().startswith("x-ratelimit") for key in response.headers)  # the route's limit
    assert len(fake_anthropic.requests) == 1 and len(fake_openai.requests) == 1
    assert fake_openai.requests[0].path.endswith("/chat/completions")  # translated for OpenAI
    if stream:
        assert "event: message_start" in response.text and "event: message_stop" in response.text
    else:
        assert response.json()["content"][0]["text"] == "hello there"


def test_responses_fallback_from_translated_failure(
    setup: tuple[FakeOpenAI, FakeAnthropic, httpx.Client],
) -> None:
    fake_openai, fake_anthropic, client = setup
    fake_openai.reset()
    fake_anthropic.reset()
    fake_anthropic.inject(Fault.error(500))
    response = client.post("/v1/responses", json={"model": "agent", "input": "hello there"})
    assert response.status_code == 200, response.text
    assert response.json()["output"][0]["content"][0]["text"] == "hello there"
    assert fake_openai.requests[0].path.endswith("/responses")  # OpenAI gets the Responses API natively


def test_both_failing_is_the_protocol_error_shape(
    setup: tuple[FakeOpenAI, FakeAnthropic, httpx.Client],
) -> None:
    fake_openai, fake_anthropic, client = setup
    fake_openai.reset()
    fake_anthropic.reset()
    fake_anthropic.inject(Fault.error(500))
    fake_openai.inject(Fault.error(500))
    response = client.post("/v1/messages", json={**HELLO, "model": "agent"})
    assert response.status_code == 502
    assert response.json()["type"] == "error" and response.json()["error"]["type"] == "api_error"


def test_metrics_count_the_agent_paths(setup: tuple[FakeOpenAI, FakeAnthropic, httpx.Client]) -> None:
    _, _, client = setup
    client.post("/v1/messages", json={**HELLO, "model": "agent"})
    client.post("/v1/responses", json={"model": "agent", "input": "x"})
    metrics = client.get("/metrics").text
    lines = [
        line
        for line in metrics.splitlines()
        if line.startswith("gateway_requests_total") and 'route="agent"' in line
    ]
    assert lines and sum(float(line.rsplit(" ", 1)[1]) for line in lines) >= 2


def test_governance_charges_every_agent_path() -> None:
    """Usage and budgets cover /v1/messages and /v1/responses, whole and streamed, passed through
    (Anthropic, OpenAI) and translated: each call is recorded with the tokens its answer used."""
    with FakeOpenAI().serve() as o, FakeAnthropic().serve() as a:
        config = parse_config(
            f"""
routes:
  - name: gpt
    route_type: llm/v1/chat
    model: {{provider: openai, name: gpt-4.1, config: {{openai_api_key: k, openai_api_base: '{o.api_base}'}}}}
  - name: claude
    route_type: llm/v1/chat
    model: {{provider: anthropic, name: claude-x, config: {{anthropic_api_key: k, anthropic_api_base: '{a.api_base}'}}}}
auth:
  keys:
    - {{name: agent, key: k1, scopes: [query, admin], budget: {{tokens: 100000, period: day}}}}
"""
        )
        with (
            serve_in_thread(create_app(config)) as server,
            httpx.Client(base_url=server.url, headers={"x-api-key": "k1"}, timeout=20) as client,
        ):
            for route in ("gpt", "claude"):
                for stream in (False, True):
                    body = {**HELLO, "model": route, "stream": stream}
                    assert client.post("/v1/messages", json=body).status_code == 200
                    body = {"model": route, "input": "hello there", "stream": stream}
                    assert client.post("/v1/responses", json=body).status_code == 200
            usage = client.get("/api/2.0/gateway/usage", params={"by": "route"}).json()["usage"]
            keys = client.get("/api/2.0/gateway/keys").json()["keys"]
    rows = {row["route"]: row for row in usage}
    for route in ("gpt", "claude"):
        assert rows[route]["requests"] == 4
        assert rows[route]["prompt_tokens"] > 0 and rows[route]["completion_tokens"] > 0
    assert keys[0]["spent"] == sum(row["total_tokens"] for row in usage)
