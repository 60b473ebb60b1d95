"""Agent-protocol streams through the whole server: ``ping`` during long upstream silences, the
protocol's error event when the upstream breaks after the start (translated and passed through),
never a silently truncated 200, and errors before the start keep their status."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from gateway_server.api import agent_stream
from gateway_server.app import create_app
from gateway_server.config import parse_config
from gateway_server.testing import FakeOpenAI, Fault, serve_in_thread
from gateway_server.testing.fake_anthropic import FakeAnthropic

MESSAGES = {
    "max_tokens": 50,
    "messages": [{"role": "user", "content": "one two three four five six"}],
    "stream": True,
}


@pytest.fixture(scope="module")
def setup() -> Iterator[tuple[FakeOpenAI, FakeAnthropic, httpx.Client]]:
    with FakeOpenAI().serve() as o, FakeAnthropic().serve() as a:
        config = parse_config(
            f"""
routes:
  - {{name: gpt, route_type: llm/v1/chat, model: {{provider: openai, name: gpt-4.1, config: {{openai_api_key: k, openai_api_base: '{o.api_base}'}}}}}}
  - {{name: claude, route_type: llm/v1/chat, model: {{provider: anthropic, name: claude-x, config: {{anthropic_api_key: k, anthropic_api_base: '{a.api_base}'}}}}}}
"""
        )
        with (
            serve_in_thread(create_app(config)) as server,
            httpx.Client(base_url=server.url, timeout=20) as client,
        ):
            yield o, a, client


def _events(text: str) -> list[tuple[str, Any]]:
    out = []
    for block in text.split("\n\n"):
        if block.strip():
            fields = dict(line.split(": ", 1) for line in block.split("\n"))
            out.append((fields.get("event", ""), orjson.loads(fields["data"])))
    return out


@pytest.mark.parametrize("route", ["gpt", "claude"])
def test_ping_while_the_upstream_is_silent(
    setup: tuple[FakeOpenAI, FakeAnthropic, httpx.Client], route: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_openai, fake_anthropic, client = setup
    fake = fake_openai if route == "gpt" else fake_anthropic
    fake.reset()
    monkeypatch.setattr(agent_stream, "PING_INTERVAL", 0.05)
    fake.inject(Fault.slow_stream(0.3))  # every upstream chunk after 0.3 s of silence
    response = client.post("/v1/messages", json={**MESSAGES, "model": route})
    assert response.status_code == 200
    names = [name for name, _ in _events(response.text)]
    assert names[0] == "message_start" and names[-1] == "message_stop"
    assert "ping" in names[1:-1]
    # pings only between events, never inside one (every block parsed above)


@pytest.mark.parametrize("route", ["gpt", "claude"])
def test_upstream_cut_after_the_start_is_an_error_event(
    setup: tuple[FakeOpenAI, FakeAnthropic, httpx.Client], route: str
) -> None:
    fake_openai, fake_anthropic, client = setup
    fake = fake_openai if route == "gpt" else fake_anthropic
    fake.reset()
    fake.inject(Fault.cut_stream(after=3))
    response = client.post("/v1/messages", json={**MESSAGES, "model": route})
    assert response.status_code == 200  # the stream had started
    events = _events(response.text)
    name, data = events[-1]
    assert name == "error", [n for n, _ in events]
    assert data["type"] == "error" and data["error"]["type"] in ("api_error", "overloaded_error")
    assert "message_stop" not in [n for n, _ in events]


def test_responses_stream_cut_is_a_failed_or_error_event(
    setup: tuple[FakeOpenAI, FakeAnthropic, httpx.Client],
) -> None:
    fake_openai, fake_anthropic, client = setup
    for fake, route, last in ((fake_anthropic, "claude", "response.failed"), (fake_openai, "gpt", "error")):
        fake.reset()
        fake.inject(Fault.cut_stream(after=3))
        response = client.post(
            "/v1/responses", json={"model": route, "input": "one two three four five", "stream": True}
        )
        assert response.status_code == 200
        names = [name for name, _ in _events(response.text)]
        assert names[-1] == last, names
        assert "response.completed" not in names


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/responses"])
def test_failure_before_the_start_keeps_its_status(
    setup: tuple[FakeOpenAI, FakeAnthropic, httpx.Client], path: str
) -> None:
    fake_openai, fake_anthropic, client = setup
    for fake, route in ((fake_openai, "gpt"), (fake_anthropic, "claude")):
        fake.reset()
        fake.inject(Fault.error(429))
        body = (
            {**MESSAGES, "model": route}
            if path == "/v1/messages"
            else {"model": route, "input": "x", "stream": True}
        )
        response = client.post(path, json=body)
        assert response.status_code == 429, response.text
        error = response.json()
        if path == "/v1/messages":
            assert error["type"] == "error" and error["error"]["type"] == "rate_limit_error"
        else:
            assert "error" in error and error["error"]["message"]
