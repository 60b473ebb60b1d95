"""The streaming contract through the whole server, for every provider whose upstream streams:
``text/event-stream``, ``role`` on the first delta, ``usage`` on the last chunk, ``data: [DONE]``;
a stream cut after the first byte ends with an error event; chunks are not held back."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest

from gateway_server.app import create_app
from gateway_server.config import parse_config
from gateway_server.testing import FakeOpenAI, Fault, serve_in_thread
from gateway_server.testing.fake_anthropic import FakeAnthropic
from gateway_server.testing.fake_bedrock import FakeBedrock
from gateway_server.testing.fake_cohere import FakeCohere
from gateway_server.testing.fake_gemini import FakeGemini
from gateway_server.testing.fake_mistral import FakeMistral
from gateway_server.testing.fake_tgi import FakeTGI

# provider name -> (fake factory, model block for a route aimed at the served fake)
PROVIDERS: dict[str, tuple[Callable[[], Any], Callable[[Any], str]]] = {
    "openai": (FakeOpenAI, lambda f: f"{{provider: openai, name: gpt-4o-mini, config: {{openai_api_key: k, openai_api_base: '{f.api_base}'}}}}"),
    "anthropic": (FakeAnthropic, lambda f: f"{{provider: anthropic, name: claude-sonnet-4-5, config: {{anthropic_api_key: k, anthropic_api_base: '{f.api_base}'}}}}"),
    "cohere": (FakeCohere, lambda f: f"{{provider: cohere, name: command-r, config: {{cohere_api_key: k, cohere_api_base: '{f.api_base}'}}}}"),
    "mistral": (FakeMistral, lambda f: f"{{provider: mistral, name: mistral-small, config: {{mistral_api_key: k, mistral_api_base: '{f.api_base}'}}}}"),
    "gemini": (FakeGemini, lambda f: f"{{provider: gemini, name: gemini-2.0-flash, config: {{gemini_api_key: k, gemini_api_base: '{f.api_base}'}}}}"),
    "bedrock": (FakeBedrock, lambda f: f"{{provider: bedrock, name: amazon.nova-lite-v1:0, config: {{aws_config: {{aws_region: us-east-1, aws_access_key_id: AKIDEXAMPLE, aws_secret_access_key: secret, endpoint_url: '{f.url}'}}}}}}"),
    "huggingface-text-generation-inference": (FakeTGI, lambda f: f"{{provider: tgi, name: tgi, config: {{hf_server_url: '{f.url}'}}}}"),
    "vllm": (FakeOpenAI, lambda f: f"{{provider: vllm, name: meta-llama/Llama-3.1-8B-Instruct, config: {{api_base: '{f.api_base}'}}}}"),
}  # fmt: skip

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
    factory, model = PROVIDERS[request.param]
    with factory().serve() as fake:
        config = parse_config(
            "routes:\n"
            f"  - {{name: chat, route_type: llm/v1/chat, model: {model(fake)}}}\n"
            f"  - {{name: completions, route_type: llm/v1/completions, model: {model(fake)}}}\n"
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
