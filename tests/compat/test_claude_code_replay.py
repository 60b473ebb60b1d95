"""A recorded Claude-Code-style session (``data/claude_code_session.json``) replayed through the
gateway on an OpenAI route (translated) and an Anthropic route (passed through): a multi-turn tool
loop over streams, exactly one upstream call per client call, usage in ``message_start`` and in
``message_delta``, and Anthropic's event order on the wire."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from gateway_server.app import create_app
from gateway_server.config import parse_config
from gateway_server.testing import FakeOpenAI, serve_in_thread
from gateway_server.testing.fake_anthropic import FakeAnthropic

pytestmark = pytest.mark.compat

SESSION = json.loads(
    (Path(__file__).parent / "data" / "claude_code_session.json").read_text(encoding="utf-8")
)


@pytest.fixture(scope="module", params=["openai", "anthropic"])
def setup(request: pytest.FixtureRequest) -> Iterator[tuple[str, Any, httpx.Client]]:
    factory = FakeOpenAI if request.param == "openai" else FakeAnthropic
    with factory().serve() as fake:
        if request.param == "openai":
            model = f"{{provider: openai, name: gpt-4.1, config: {{openai_api_key: k, openai_api_base: '{fake.api_base}'}}}}"
        else:
            model = f"{{provider: anthropic, name: claude-sonnet-4-5-20250929, config: {{anthropic_api_key: k, anthropic_api_base: '{fake.api_base}'}}}}"
        config = parse_config(
            f"routes:\n  - {{name: coding, route_type: llm/v1/chat, aliases: [claude-sonnet-4-5], model: {model}}}\n"
        )
        with (
            serve_in_thread(create_app(config)) as server,
            httpx.Client(base_url=server.url, timeout=20) as client,
        ):
            yield request.param, fake, client


def _events(text: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        out.append((lines["event"], orjson.loads(lines["data"])))
    return out


def _assemble(events: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """The content blocks an SDK would build from the events (by index)."""
    blocks: dict[int, dict[str, Any]] = {}
    partial: dict[int, str] = {}
    for name, data in events:
        if name == "content_block_start":
            blocks[data["index"]] = dict(data["content_block"])
        elif name == "content_block_delta":
            delta = data["delta"]
            if delta["type"] == "text_delta":
                blocks[data["index"]]["text"] += delta["text"]
            elif delta["type"] == "input_json_delta":
                partial[data["index"]] = partial.get(data["index"], "") + delta["partial_json"]
    for index, text in partial.items():
        blocks[index]["input"] = json.loads(text)
    return [blocks[index] for index in sorted(blocks)]


def test_claude_code_session_replays(setup: tuple[str, Any, httpx.Client]) -> None:
    provider, fake, client = setup
    fake.reset()
    headers = {**SESSION["headers"], "x-api-key": "any-key-on-an-open-gateway"}
    base = {"model": "claude-sonnet-4-5", "system": SESSION["system"], "metadata": SESSION["metadata"]}
    history: list[dict[str, Any]] = []
    for step, call in enumerate(SESSION["calls"]):
        before = len(fake.requests)
        if call["kind"] == "count_tokens":
            response = client.post(
                "/v1/messages/count_tokens", json={"model": base["model"], **call["body"]}, headers=headers
            )
            assert response.status_code == 200, response.text
            assert response.json()["input_tokens"] > 0
            # Anthropic counts upstream; other routes estimate without an upstream call.
            assert len(fake.requests) - before == (1 if provider == "anthropic" else 0)
            continue
        if call["kind"] == "messages":
            response = client.post("/v1/messages", json={**base, **call["body"]}, headers=headers)
            assert response.status_code == 200, response.text
            assert response.json()["type"] == "message"
            assert len(fake.requests) - before == 1, f"step {step}: one upstream call per client call"
            continue
        if "user" in call:
            history.append({"role": "user", "content": call["user"]})
        else:
            tool_use = next(block for block in history[-1]["content"] if block["type"] == "tool_use")
            result = {"type": "tool_result", "tool_use_id": tool_use["id"], "content": call["tool_result"]}
            history.append({"role": "user", "content": [result]})
        body = {**base, "max_tokens": 32000, "messages": history, "tools": SESSION["tools"], "stream": True}
        if provider == "anthropic":
            body["thinking"] = {"type": "enabled", "budget_tokens": 4000}
        if "tool_choice" in call:
            body["tool_choice"] = call["tool_choice"]
            body.pop("thinking", None)
        response = client.post("/v1/messages", json=body, headers=headers)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/event-stream")
        assert len(fake.requests) - before == 1, f"step {step}: one upstream call per client call"
        events = [(name, data) for name, data in _events(response.text) if name != "ping"]
        names = [name for name, _ in events]
        assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"], names
        assert "error" not in names
        start_usage = events[0][1]["message"]["usage"]
        assert start_usage["input_tokens"] > 0, f"{provider}: usage in message_start"
        final = events[-2][1]
        if provider != "anthropic":  # translated: the real input count replaces the estimate
            assert final["usage"]["input_tokens"] > 0, f"{provider}: usage in message_delta"
        # (Anthropic's message_delta carries the output count only; the fakes count text tokens.)
        assert final["usage"]["output_tokens"] > 0 or call["expect"] == "tool_use", (
            f"{provider}: output usage"
        )
        assert final["delta"]["stop_reason"] == call["expect"]
        content = _assemble(events)
        history.append({"role": "assistant", "content": content})
        if call["expect"] == "tool_use":
            tool_use = content[-1]
            assert tool_use["type"] == "tool_use" and tool_use["name"] == "Read"
            assert tool_use["input"] == {"text": "what does README.md say"}
        else:
            assert content[-1]["type"] == "text" and content[-1]["text"]
    sent = fake.requests[-1]
    if provider == "anthropic":  # passed through: Anthropic's own fields and headers arrive as sent
        assert sent.headers["anthropic-beta"] == SESSION["headers"]["anthropic-beta"]
        assert sent.json["system"] == SESSION["system"] and sent.json["tools"] == SESSION["tools"]
        assert sent.json["model"] == "claude-sonnet-4-5-20250929"
    else:  # translated: an OpenAI chat request with the whole loop in it
        roles = [message["role"] for message in sent.json["messages"]]
        assert roles == ["system", "user", "assistant", "tool", "assistant", "user"]
        assert sent.json["model"] == "gpt-4.1"
