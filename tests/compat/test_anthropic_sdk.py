"""The official Anthropic Python SDK pointed at the gateway works unchanged on every chat route:
sync, async, ``messages.stream``, tools, ``count_tokens`` and its error classes. Routes on the
OpenAI, Gemini and Bedrock fakes are translated through the chat path; the Anthropic route is
passed through natively (thinking, cache_control and beta headers kept, the gateway key swapped
for the upstream key)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest

from gateway_server.app import create_app
from gateway_server.config import parse_config
from gateway_server.testing import FakeOpenAI, serve_in_thread
from gateway_server.testing.fake_anthropic import FakeAnthropic
from gateway_server.testing.fake_bedrock import FakeBedrock
from gateway_server.testing.fake_gemini import FakeGemini

pytestmark = pytest.mark.compat

GATEWAY_KEY = "gw-agent-key"
UPSTREAM_KEY = "sk-ant-upstream"
TOOLS = [
    {
        "name": "lookup",
        "description": "Look a word up",
        "input_schema": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
    }
]
HELLO = [{"role": "user", "content": "hello there friend"}]


@pytest.fixture(scope="module")
def fakes() -> Iterator[dict[str, Any]]:
    with (
        FakeOpenAI().serve() as openai_fake,
        FakeAnthropic(api_key=UPSTREAM_KEY).serve() as anthropic_fake,
        FakeGemini().serve() as gemini_fake,
        FakeBedrock().serve() as bedrock_fake,
    ):
        yield {
            "openai": openai_fake,
            "anthropic": anthropic_fake,
            "gemini": gemini_fake,
            "bedrock": bedrock_fake,
        }


@pytest.fixture(scope="module")
def gateway(fakes: dict[str, Any]) -> Iterator[str]:
    o, a, g, b = fakes["openai"], fakes["anthropic"], fakes["gemini"], fakes["bedrock"]
    config = parse_config(
        f"""
routes:
  - name: openai
    route_type: llm/v1/chat
    aliases: [claude-sonnet-4-5]
    model: {{provider: openai, name: gpt-4o-mini, config: {{openai_api_key: k, openai_api_base: '{o.api_base}'}}}}
  - name: anthropic
    route_type: llm/v1/chat
    aliases: [claude-opus-4-1]
    model: {{provider: anthropic, name: claude-opus-4-1-20250805, config: {{anthropic_api_key: {UPSTREAM_KEY}, anthropic_api_base: '{a.api_base}'}}}}
  - name: gemini
    route_type: llm/v1/chat
    model: {{provider: gemini, name: gemini-2.0-flash, config: {{gemini_api_key: k, gemini_api_base: '{g.api_base}'}}}}
  - name: bedrock
    route_type: llm/v1/chat
    model: {{provider: bedrock, name: amazon.nova-lite-v1:0, config: {{aws_config: {{aws_region: us-east-1, aws_access_key_id: AKIDEXAMPLE, aws_secret_access_key: secret, endpoint_url: '{b.url}'}}}}}}
  - name: embed
    route_type: llm/v1/embeddings
    model: {{provider: openai, name: text-embedding-3-small, config: {{openai_api_key: k, openai_api_base: '{o.api_base}'}}}}
  - name: limited
    route_type: llm/v1/chat
    limit: {{calls: 1, renewal_period: minute}}
    model: {{provider: fake, name: fake-chat}}
auth:
  keys:
    - {{name: agent, key: {GATEWAY_KEY}, scopes: [query]}}
"""
    )
    with serve_in_thread(create_app(config)) as server:
        yield server.url


@pytest.fixture
def client(gateway: str) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=gateway, api_key=GATEWAY_KEY, max_retries=0) as sdk:
        yield sdk


ROUTES = ["openai", "anthropic", "gemini", "bedrock"]


@pytest.mark.parametrize("route", ROUTES)
def test_create_text(client: anthropic.Anthropic, route: str) -> None:
    message = client.messages.create(model=route, max_tokens=64, system="Be brief.", messages=HELLO)
    assert message.type == "message" and message.role == "assistant"
    assert message.model  # echoed
    assert "hello there friend" in message.content[0].text
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0


@pytest.mark.parametrize("route", ROUTES)
def test_stream_text(client: anthropic.Anthropic, route: str) -> None:
    with client.messages.stream(model=route, max_tokens=64, messages=HELLO) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start"
    assert kinds[-2:] == ["message_delta", "message_stop"]
    assert "content_block_start" in kinds and "content_block_stop" in kinds
    assert "hello there friend" in final.content[0].text
    assert final.stop_reason == "end_turn"
    assert final.usage.input_tokens > 0 and final.usage.output_tokens > 0


@pytest.mark.parametrize("route", ROUTES)
def test_tool_loop(client: anthropic.Anthropic, route: str) -> None:
    first = client.messages.create(model=route, max_tokens=64, tools=TOOLS, messages=HELLO)
    assert first.stop_reason == "tool_use"
    call = next(block for block in first.content if block.type == "tool_use")
    assert call.name == "lookup" and call.input == {"text": "hello there friend"}
    history = [
        *HELLO,
        {"role": "assistant", "content": [block.model_dump(exclude_none=True) for block in first.content]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "a greeting"}],
        },
    ]
    with client.messages.stream(model=route, max_tokens=64, tools=TOOLS, messages=history) as stream:
        second = stream.get_final_message()
    assert second.stop_reason == "end_turn"
    assert "a greeting" in second.content[0].text


@pytest.mark.parametrize("route", ROUTES)
def test_streamed_tool_call(client: anthropic.Anthropic, route: str) -> None:
    with client.messages.stream(model=route, max_tokens=64, tools=TOOLS, messages=HELLO) as stream:
        final = stream.get_final_message()
    call = next(block for block in final.content if block.type == "tool_use")
    assert call.input == {"text": "hello there friend"}
    assert final.stop_reason == "tool_use"


@pytest.mark.parametrize("route", ROUTES)
def test_count_tokens(client: anthropic.Anthropic, route: str) -> None:
    count = client.messages.count_tokens(model=route, messages=HELLO, system="Be brief.")
    assert count.input_tokens > 0


def test_async_create_and_stream(gateway: str) -> None:
    async def run() -> tuple[str, str]:
        async with anthropic.AsyncAnthropic(base_url=gateway, api_key=GATEWAY_KEY, max_retries=0) as sdk:
            message = await sdk.messages.create(model="claude-sonnet-4-5", max_tokens=64, messages=HELLO)
            async with sdk.messages.stream(model="anthropic", max_tokens=64, messages=HELLO) as stream:
                final = await stream.get_final_message()
            return message.content[0].text, final.content[0].text

    translated, native = asyncio.run(run())
    assert "hello there friend" in translated and "hello there friend" in native


def test_native_pass_through_keeps_anthropic_fields(
    client: anthropic.Anthropic, fakes: dict[str, Any]
) -> None:
    fake = fakes["anthropic"]
    fake.reset()
    system = [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}]
    client.messages.create(
        model="claude-opus-4-1",  # an alias of the anthropic route
        max_tokens=2048,
        system=system,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=HELLO,
        extra_headers={"anthropic-beta": "interleaved-thinking-2025-05-14"},
    )
    sent = fake.last_request
    assert sent.json["model"] == "claude-opus-4-1-20250805"  # the route's model
    assert sent.json["system"] == system and sent.json["thinking"]["budget_tokens"] == 1024
    assert sent.headers["anthropic-beta"] == "interleaved-thinking-2025-05-14"
    assert sent.headers["x-api-key"] == UPSTREAM_KEY  # the gateway key never goes upstream
    assert GATEWAY_KEY not in str(sent.headers)


def test_error_classes(client: anthropic.Anthropic, gateway: str) -> None:
    with pytest.raises(anthropic.NotFoundError) as missing:
        client.messages.create(model="no-such-route", max_tokens=8, messages=HELLO)
    assert missing.value.body["error"]["type"] == "not_found_error"
    with pytest.raises(anthropic.BadRequestError) as bad:
        client.messages.create(model="openai", max_tokens=8, messages=[{"role": "system", "content": "x"}])
    assert bad.value.body["type"] == "error" and bad.value.body["error"]["type"] == "invalid_request_error"
    with pytest.raises(anthropic.BadRequestError, match="web_search"):
        client.messages.create(
            model="openai",
            max_tokens=8,
            messages=HELLO,
            tools=[{"type": "web_search_20250305", "name": "web_search"}],
        )
    with pytest.raises(anthropic.BadRequestError, match="embeddings"):
        client.messages.create(model="embed", max_tokens=8, messages=HELLO)
    with (
        anthropic.Anthropic(base_url=gateway, api_key="wrong", max_retries=0) as wrong,
        pytest.raises(anthropic.AuthenticationError) as denied,
    ):
        wrong.messages.create(model="openai", max_tokens=8, messages=HELLO)
    assert denied.value.body["error"]["type"] == "authentication_error"
    client.messages.create(model="limited", max_tokens=8, messages=HELLO)
    with pytest.raises(anthropic.RateLimitError) as limited:
        client.messages.create(model="limited", max_tokens=8, messages=HELLO)
    assert limited.value.body["error"]["type"] == "rate_limit_error"


def test_upstream_failure_maps_to_sdk_class(client: anthropic.Anthropic, fakes: dict[str, Any]) -> None:
    from gateway_server.testing import Fault

    for name in ("openai", "anthropic"):
        fake = fakes[name]
        fake.reset()
        fake.inject(Fault(status=500))
        with pytest.raises(anthropic.InternalServerError) as failed:
            client.messages.create(model=name, max_tokens=8, messages=HELLO)
        assert failed.value.body["type"] == "error"
        fake.reset()
