"""Upstream transports (upstream/transport.py): the pool, httpx, and in-process ASGI apps.

httpx is exercised end to end against a fake upstream on 127.0.0.1, per route and server-wide;
the in-process transport runs a real adapter against the same fake with no socket at all.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from gateway_server.app import create_app
from gateway_server.config import parse_config
from gateway_server.errors import UpstreamConnectionError, UpstreamStatusError, UpstreamTimeoutError
from gateway_server.providers.openai import OpenAIAdapter, OpenAIConfig
from gateway_server.routes import RouteType
from gateway_server.testing import FakeOpenAI, Fault, serve_in_thread
from gateway_server.upstream.client import UpstreamClient
from gateway_server.upstream.in_process import InProcessTransport

CHAT = {"messages": [{"role": "user", "content": "Hello there"}]}


def _route(name: str, api_base: str, transport: str | None = None) -> str:
    extra = f"\n    transport: {transport}" if transport else ""
    return f"""
  - name: {name}
    route_type: llm/v1/chat
    model: {{provider: openai, name: gpt-4o-mini, config: {{openai_api_key: sk-test, openai_api_base: '{api_base}'}}}}{extra}"""


@pytest.fixture
def gateway(fake_openai: FakeOpenAI) -> Iterator[httpx.Client]:
    config = parse_config(
        "routes:"
        + _route("pooled", fake_openai.api_base)
        + _route("viahttpx", fake_openai.api_base, "httpx")
        + _route("refused", f"http://127.0.0.1:{_closed_port()}/v1", "httpx")
        + "\n"
    )
    with serve_in_thread(create_app(config)) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        yield client


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _user_agent(fake: FakeOpenAI) -> str:
    return fake.last_request.headers.get("user-agent") or ""


def test_a_route_can_use_httpx_while_others_use_the_pool(gateway: httpx.Client, fake_openai: FakeOpenAI) -> None:
    answer = gateway.post("/gateway/viahttpx/invocations", json=CHAT)
    assert answer.status_code == 200, answer.text
    assert answer.json()["candidates"][0]["message"]["content"]
    assert _user_agent(fake_openai).startswith("python-httpx/")  # it really went through httpx
    assert gateway.post("/gateway/pooled/invocations", json=CHAT).status_code == 200
    assert not _user_agent(fake_openai).startswith("python-httpx/")


def test_httpx_streams_and_maps_failures_like_the_pool(gateway: httpx.Client, fake_openai: FakeOpenAI) -> None:
    with gateway.stream("POST", "/v1/chat/completions", json={**CHAT, "model": "viahttpx", "stream": True}) as got:
        assert got.status_code == 200
        body = "".join(got.iter_text())
    assert body.count("data: ") > 2 and body.rstrip().endswith("data: [DONE]")
    fake_openai.inject(Fault.rate_limited(retry_after=7))
    limited = gateway.post("/gateway/viahttpx/invocations", json=CHAT)
    assert limited.status_code == 429 and limited.headers["retry-after"] == "7"
    refused = gateway.post("/gateway/refused/invocations", json=CHAT)
    assert refused.status_code == 502
    assert "could not connect to openai" in refused.json()["error"]["message"]


def test_httpx_server_wide(fake_openai: FakeOpenAI) -> None:
    config = parse_config(
        "routes:" + _route("chat", fake_openai.api_base) + "\nserver:\n  upstream_transport: httpx\n"
    )
    with serve_in_thread(create_app(config)) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        assert client.post("/gateway/chat/invocations", json=CHAT).status_code == 200
    assert _user_agent(fake_openai).startswith("python-httpx/")


def test_an_unknown_transport_is_a_config_error() -> None:
    with pytest.raises(Exception, match="transport"):
        parse_config("routes:" + _route("chat", "http://127.0.0.1:9/v1", "carrier-pigeon") + "\n")


# ---------------------------------------------------------------- in process, no socket


def _adapter(origin: str) -> OpenAIAdapter:
    config = OpenAIConfig.model_validate({"openai_api_key": "sk-test", "openai_api_base": f"{origin}/v1"})
    return OpenAIAdapter(config, "gpt-4o-mini")


def _in_process(fake: Any, action: Any) -> Any:
    async def run() -> Any:
        transport = InProcessTransport({"http://openai.test": fake})
        return await action(UpstreamClient(transport))

    return asyncio.run(run())


def test_a_real_adapter_against_an_in_process_fake_upstream() -> None:
    fake = FakeOpenAI()  # never served: no socket
    adapter = _adapter("http://openai.test")
    answer = _in_process(fake, lambda client: client.call(adapter, RouteType.CHAT, dict(CHAT), 5))
    assert answer["object"] == "chat.completion" and answer["choices"][0]["message"]["content"]
    assert fake.last_request.json["model"] == "gpt-4o-mini"

    async def collect(client: UpstreamClient) -> list[dict[str, Any]]:
        return [chunk async for chunk in client.stream(adapter, RouteType.CHAT, {**CHAT, "stream": True}, 5)]

    chunks = _in_process(fake, collect)
    assert len(chunks) > 2 and chunks[-1]["usage"]["total_tokens"] > 0


def test_in_process_failures_are_classified() -> None:
    fake = FakeOpenAI()
    adapter = _adapter("http://openai.test")
    fake.inject(Fault.error(503, "overloaded"))
    with pytest.raises(UpstreamStatusError) as status:
        _in_process(fake, lambda client: client.call(adapter, RouteType.CHAT, dict(CHAT), 5))
    assert status.value.upstream_status == 503
    fake.inject(Fault.slow(2))
    with pytest.raises(UpstreamTimeoutError):
        _in_process(fake, lambda client: client.call(adapter, RouteType.CHAT, dict(CHAT), 0.2))
    with pytest.raises(UpstreamConnectionError, match="could not connect"):
        _in_process(fake, lambda client: client.call(_adapter("http://nowhere.test"), RouteType.CHAT, dict(CHAT), 5))
