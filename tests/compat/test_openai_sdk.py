"""The official OpenAI Python SDK pointed at ``<gateway>/v1`` works unchanged: sync and async,
chat, completions, embeddings, streaming, tool calls, and its error classes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import openai
import pytest

from gateway_server.app import create_app
from gateway_server.config import parse_config
from gateway_server.testing import FakeOpenAI, Fault, serve_in_thread

pytestmark = pytest.mark.compat

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup",
            "description": "Look a word up",
            "parameters": {
                "type": "object",
                "properties": {"text": {"type": "string"}},
                "required": ["text"],
            },
        },
    }
]
HELLO = [{"role": "user", "content": "hello there"}]


@pytest.fixture(scope="module")
def base_url(fake_openai_server: FakeOpenAI) -> Iterator[str]:
    upstream = f"{{openai_api_key: sk-x, openai_api_base: '{fake_openai_server.api_base}'}}"
    config = parse_config(
        f"""
routes:
  - name: chat
    route_type: llm/v1/chat
    model: {{provider: openai, name: gpt-4o-mini, config: {upstream}}}
  - name: instruct
    route_type: llm/v1/completions
    model: {{provider: openai, name: gpt-3.5-turbo-instruct, config: {upstream}}}
  - name: embed
    route_type: llm/v1/embeddings
    model: {{provider: openai, name: text-embedding-3-small, config: {upstream}}}
  - name: limited
    route_type: llm/v1/chat
    limit: {{calls: 1, renewal_period: minute}}
    model: {{provider: fake, name: fake-chat}}
"""
    )
    with serve_in_thread(create_app(config)) as server:
        yield server.url + "/v1"


@pytest.fixture
def client(base_url: str, fake_openai: FakeOpenAI) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=base_url, api_key="unused-by-an-open-gateway", max_retries=0) as sdk:
        yield sdk


def test_openai_sdk_chat(client: openai.OpenAI, fake_openai: FakeOpenAI) -> None:
    completion = client.chat.completions.create(model="chat", messages=HELLO, temperature=0.2)
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.role == "assistant"
    assert "hello there" in completion.choices[0].message.content
    assert (
        completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens
    )
    assert fake_openai.last_request.json["model"] == "gpt-4o-mini"  # the route's model, not "chat"


def test_openai_sdk_tool_calls(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(model="chat", messages=HELLO, tools=TOOLS)
    call = completion.choices[0].message.tool_calls[0]
    assert completion.choices[0].finish_reason == "tool_calls"
    assert call.type == "function" and call.function.name == "lookup"


def test_openai_sdk_completions_and_embeddings(client: openai.OpenAI) -> None:
    completion = client.completions.create(model="instruct", prompt="It's one small step")
    assert completion.object == "text_completion" and "one small step" in completion.choices[0].text
    embeddings = client.embeddings.create(model="embed", input=["a", "b"])
    assert [item.index for item in embeddings.data] == [0, 1]
    assert all(isinstance(value, float) for value in embeddings.data[0].embedding)


def test_openai_sdk_streaming_with_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="chat", messages=HELLO, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert "hello there" in text
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0


def test_openai_sdk_streaming_tool_calls_keep_indices(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(model="chat", messages=HELLO, tools=TOOLS, stream=True)
    deltas = [tc for chunk in stream if chunk.choices for tc in (chunk.choices[0].delta.tool_calls or [])]
    assert deltas and {delta.index for delta in deltas} == {0}
    assert deltas[0].function.name == "lookup"


def test_openai_sdk_error_classes(client: openai.OpenAI, fake_openai: FakeOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="no-such-route", messages=HELLO)
    assert "no-such-route" in missing.value.message
    with pytest.raises(openai.BadRequestError) as wrong_type:
        client.chat.completions.create(model="embed", messages=HELLO)
    assert "llm/v1/embeddings" in wrong_type.value.message
    fake_openai.inject(Fault.rate_limited(retry_after=1))
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="chat", messages=HELLO)
    client.chat.completions.create(model="limited", messages=HELLO)
    with pytest.raises(openai.RateLimitError) as limited:
        client.chat.completions.create(model="limited", messages=HELLO)
    assert limited.value.response.headers["retry-after"]


def test_openai_sdk_async(base_url: str, fake_openai: FakeOpenAI) -> None:
    async def go() -> tuple[str, str]:
        async with openai.AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0) as sdk:
            completion = await sdk.chat.completions.create(model="chat", messages=HELLO)
            stream = await sdk.chat.completions.create(model="chat", messages=HELLO, stream=True)
            text = "".join([chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices])
            return completion.choices[0].message.content, text

    whole, streamed = asyncio.run(go())
    assert "hello there" in whole and "hello there" in streamed
