"""The streaming contract through the whole server, for every provider whose upstream streams:
``text/event-stream``, ``role`` on the first delta, ``usage`` on the last chunk, ``data: [DONE]``;
a stream cut after the first byte ends with an error event; chunks are not held back."""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest

from gateway_server.app import create_app
from gateway_server.config import parse_config
from gateway_server.providers.catalog import CATALOG, ProviderSpec
from gateway_server.routes import RouteType
from gateway_server.testing import FakeOpenAI, Fault, serve_in_thread

# Every provider of the provider table whose upstream streams chat and completions, against its
# fake (the table names the fake and a route's model block aimed at it).
PROVIDERS: dict[str, ProviderSpec] = {
    spec.name: spec
    for spec in CATALOG
    if {RouteType.CHAT, RouteType.COMPLETIONS} <= spec.streaming_route_types and spec.fake and spec.sample
}


def _fake_factory(spec: ProviderSpec) -> Callable[[], Any]:
    assert spec.fake is not None
    module, _, name = spec.fake.partition(":")
    factory: Callable[[], Any] = getattr(importlib.import_module(f"gateway_server.testing.{module}"), name)
    return factory


CHAT = {"messages": [{"role": "user", "content": "one two three four five"}], "stream": True}


def _events(text: str) -> list[Any]:
    out = []
    for block in text.split("\n\n"):
        if block.startswith("data: "):
            data = block[6:]
            out.append(data if data == "[DONE]" else orjson.loads(data))
    return out


@pytest.fixture(scope="module", params=sorted(PROVIDERS))
def provider(request: pytest.FixtureRequest) -> Iterator[tuple[str, Any, httpx.Client]]:
    spec = PROVIDERS[request.param]
    with _fake_factory(spec)().serve() as fake:
        model = spec.sample_for(base=fake.api_base, url=fake.url)
        config = parse_config(
            "routes:\n"
            f"  - {{name: chat, route_type: llm/v1/chat, model: {model}}}\n"
            f"  - {{name: completions, route_type: llm/v1/completions, model: {model}}}\n"
        )
        with (
            serve_in_thread(create_app(config)) as server,
            httpx.Client(base_url=server.url, timeout=20) as client,
        ):
            yield request.param, fake, client


def test_stream_contract_per_provider(provider: tuple[str, Any, httpx.Client]) -> None:
    name, fake, client = provider
    fake.reset()
    response = client.post("/v1/chat/completions", json={**CHAT, "model": "chat"})
    assert response.status_code == 200, f"{name}: {response.text}"
    assert response.headers["content-type"].startswith("text/event-stream")
    events = _events(response.text)
    assert events[-1] == "[DONE]", f"{name}: no [DONE]"
    chunks = events[:-1]
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert len({chunk["id"] for chunk in chunks}) == 1, f"{name}: one id per stream"
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant", f"{name}: role on the first delta"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text.strip(), f"{name}: no text streamed"
    usage = chunks[-1].get("usage")
    assert usage and usage["total_tokens"] > 0, f"{name}: usage on the last chunk"
    assert any(c["choices"] and c["choices"][0].get("finish_reason") for c in chunks), (
        f"{name}: a finish_reason"
    )


def test_stream_completions_per_provider(provider: tuple[str, Any, httpx.Client]) -> None:
    name, fake, client = provider
    fake.reset()
    body = {"model": "completions", "prompt": "one two three", "stream": True}
    events = _events(client.post("/v1/completions", json=body).text)
    assert events[-1] == "[DONE]", name
    assert "".join(c["choices"][0]["text"] for c in events[:-1] if c["choices"]).strip(), name
    assert events[-2].get("usage"), f"{name}: usage on the last chunk"


def test_stream_cut_after_first_byte_is_an_error_event(provider: tuple[str, Any, httpx.Client]) -> None:
    name, fake, client = provider
    fake.reset()
    fake.inject(Fault.cut_stream(after=2))
    response = client.post("/v1/chat/completions", json={**CHAT, "model": "chat"})
    assert response.status_code == 200, name
    events = _events(response.text)
    assert "[DONE]" not in events, f"{name}: a cut stream must not end as if complete"
    assert "error" in events[-1] and events[-1]["error"]["code"] >= 500, f"{name}: {events[-1]}"


def test_stream_chunks_are_not_held_back(provider: tuple[str, Any, httpx.Client]) -> None:
    name, fake, client = provider
    fake.reset()
    fake.inject(Fault.slow_stream(0.15))
    started = time.monotonic()
    with client.stream("POST", "/v1/chat/completions", json={**CHAT, "model": "chat"}) as response:
        lines = response.iter_lines()
        next(line for line in lines if line.startswith("data: "))
        first_at = time.monotonic() - started
        rest = [line for line in lines if line.startswith("data: ")]
    total = time.monotonic() - started
    assert rest[-1] == "data: [DONE]", name
    assert first_at < total - 0.3, f"{name}: first chunk at {first_at:.2f}s of {total:.2f}s"


def test_every_chunk_has_a_choice_and_the_last_one_carries_the_usage(
    provider: tuple[str, Any, httpx.Client],
) -> None:
    """The usual ``chunk["choices"][0]`` loop works to the end when the caller did not ask for
    OpenAI's separate usage chunk: the final chunk has its choice *and* the usage."""
    name, fake, client = provider
    fake.reset()
    for path, body in (
        ("/v1/chat/completions", {**CHAT, "model": "chat"}),
        ("/v1/completions", {"model": "completions", "prompt": "one two three", "stream": True}),
    ):
        chunks = _events(client.post(path, json=body).text)[:-1]
        assert all(chunk["choices"] for chunk in chunks), f"{name} {path}: a chunk without choices"
        assert chunks[-1]["choices"][0].get("finish_reason"), f"{name} {path}: last chunk's choice"
        assert chunks[-1]["usage"]["total_tokens"] > 0, f"{name} {path}: last chunk's usage"


def test_openai_usage_chunk_only_when_the_caller_asks_for_it() -> None:
    with FakeOpenAI().serve() as fake:
        config = parse_config(
            "routes:\n"
            "  - {name: chat, route_type: llm/v1/chat, model: "
            f"{{provider: openai, name: gpt-4o-mini, config: {{openai_api_key: k, openai_api_base: '{fake.api_base}'}}}}}}\n"
        )
        with (
            serve_in_thread(create_app(config)) as server,
            httpx.Client(base_url=server.url, timeout=20) as client,
        ):
            asked = {**CHAT, "model": "chat", "stream_options": {"include_usage": True}}
            chunks = _events(client.post("/v1/chat/completions", json=asked).text)[:-1]
            # OpenAI's own shape, as asked: the finish, then one usage-only chunk with no choices.
            assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0
            assert chunks[-2]["choices"][0]["finish_reason"] == "stop" and "usage" not in chunks[-2]
            plain = _events(client.post("/v1/chat/completions", json={**CHAT, "model": "chat"}).text)[:-1]
            assert [c["choices"][0]["finish_reason"] for c in plain].count("stop") == 1
            assert len(plain) == len(chunks) - 1  # the same stream, the usage folded into the last chunk
