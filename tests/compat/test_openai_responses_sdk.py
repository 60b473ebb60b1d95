"""The official OpenAI Python SDK's Responses API against the gateway, on every chat route:
``responses.create``, ``responses.stream``, ``retrieve``, ``delete``, function calls and
``previous_response_id``. The OpenAI route is passed through natively; the Anthropic, Gemini and
Bedrock routes are translated through the chat path. Stored responses live in memory, or in Redis
with ``server.shared_state`` (then every process finds them)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from gateway_server.app import create_app
from gateway_server.config import parse_config
from gateway_server.testing import FakeOpenAI, serve_in_thread
from gateway_server.testing.fake_anthropic import FakeAnthropic
from gateway_server.testing.fake_bedrock import FakeBedrock
from gateway_server.testing.fake_gemini import FakeGemini

pytestmark = pytest.mark.compat

TOOLS = [
    {
        "type": "function",
        "name": "lookup",
        "description": "Look a word up",
        "parameters": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
    }
]
ROUTES = ["openai", "anthropic", "gemini", "bedrock"]


def _config(fakes: dict[str, Any], extra: str = "") -> str:
    o, a, g, b = fakes["openai"], fakes["anthropic"], fakes["gemini"], fakes["bedrock"]
    return f"""
routes:
  - name: openai
    route_type: llm/v1/chat
    aliases: [gpt-5-codex]
    model: {{provider: openai, name: gpt-4.1, config: {{openai_api_key: k, openai_api_base: '{o.api_base}'}}}}
  - name: anthropic
    route_type: llm/v1/chat
    model: {{provider: anthropic, name: claude-sonnet-4-5, config: {{anthropic_api_key: k, anthropic_api_base: '{a.api_base}'}}}}
  - name: gemini
    route_type: llm/v1/chat
    model: {{provider: gemini, name: gemini-2.0-flash, config: {{gemini_api_key: k, gemini_api_base: '{g.api_base}'}}}}
  - name: bedrock
    route_type: llm/v1/chat
    model: {{provider: bedrock, name: amazon.nova-lite-v1:0, config: {{aws_config: {{aws_region: us-east-1, aws_access_key_id: AKIDEXAMPLE, aws_secret_access_key: secret, endpoint_url: '{b.url}'}}}}}}
{extra}"""


@pytest.fixture(scope="module")
def fakes() -> Iterator[dict[str, Any]]:
    with (
        FakeOpenAI().serve() as o,
        FakeAnthropic().serve() as a,
        FakeGemini().serve() as g,
        FakeBedrock().serve() as b,
    ):
        yield {"openai": o, "anthropic": a, "gemini": g, "bedrock": b}


@pytest.fixture(scope="module")
def base_url(fakes: dict[str, Any]) -> Iterator[str]:
    with serve_in_thread(create_app(parse_config(_config(fakes)))) as server:
        yield server.url + "/v1"


@pytest.fixture
def client(base_url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0) as sdk:
        yield sdk


@pytest.mark.parametrize("route", ROUTES)
def test_create_retrieve_delete(client: openai.OpenAI, route: str) -> None:
    response = client.responses.create(
        model=route, input="hello there", instructions="Be brief.", metadata={"t": "1"}
    )
    assert response.object == "response" and response.status == "completed"
    assert response.output_text == "hello there"
    assert response.output[0].type == "message" and response.output[0].content[0].type == "output_text"
    assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0
    again = client.responses.retrieve(response.id)
    assert again.id == response.id and again.output_text == "hello there"
    client.responses.delete(response.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)


@pytest.mark.parametrize("route", ROUTES)
def test_stream(client: openai.OpenAI, route: str) -> None:
    with client.responses.stream(model=route, input="hello there friend") as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    for kind in ("response.output_item.added", "response.content_part.added", "response.output_text.delta",
                 "response.output_text.done", "response.output_item.done"):  # fmt: skip
        assert kind in kinds, f"{route}: no {kind}"
    assert final.output_text == "hello there friend"
    assert (
        client.responses.retrieve(final.id).output_text == "hello there friend"
    )  # streamed answers are stored too


@pytest.mark.parametrize("route", ROUTES)
def test_function_call_loop_with_previous_response_id(client: openai.OpenAI, route: str) -> None:
    first = client.responses.create(model=route, input="weather in paris", tools=TOOLS)
    call = first.output[-1]
    assert call.type == "function_call" and call.name == "lookup"
    assert json.loads(call.arguments) == {"text": "weather in paris"}
    with client.responses.stream(
        model=route,
        previous_response_id=first.id,
        tools=TOOLS,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny and warm"}],
    ) as stream:
        second = stream.get_final_response()
    assert second.output_text == "sunny and warm"
    third = client.responses.create(model=route, previous_response_id=second.id, input="thanks")
    assert third.output_text == "thanks"


@pytest.mark.parametrize("route", ROUTES)
def test_streamed_function_call(client: openai.OpenAI, route: str) -> None:
    with client.responses.stream(model=route, input="weather in rome", tools=TOOLS) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert (
        "response.function_call_arguments.delta" in kinds and "response.function_call_arguments.done" in kinds
    )
    call = final.output[-1]
    assert call.type == "function_call" and "weather in rome" in call.arguments


def test_async_client(base_url: str) -> None:
    async def run() -> tuple[str, str]:
        async with openai.AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0) as sdk:
            created = await sdk.responses.create(model="gpt-5-codex", input="hello async")
            async with sdk.responses.stream(model="gemini", input="hello stream") as stream:
                final = await stream.get_final_response()
            return created.output_text, final.output_text

    assert asyncio.run(run()) == ("hello async", "hello stream")


def test_refusals_and_errors(client: openai.OpenAI) -> None:
    for route in ("anthropic", "gemini"):
        with pytest.raises(openai.BadRequestError, match="web_search"):
            client.responses.create(model=route, input="x", tools=[{"type": "web_search"}])
        with pytest.raises(openai.BadRequestError, match="file_search"):
            client.responses.create(
                model=route, input="x", tools=[{"type": "file_search", "vector_store_ids": ["v"]}]
            )
        with pytest.raises(openai.NotFoundError, match="resp_unknown"):
            client.responses.create(model=route, input="x", previous_response_id="resp_unknown")
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="no-such-route", input="x")
    with pytest.raises(openai.BadRequestError, match="input"):
        client.responses.create(model="gemini")  # type: ignore[call-overload]


def test_store_false_is_not_kept(client: openai.OpenAI) -> None:
    response = client.responses.create(model="anthropic", input="private", store=False)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)


def test_shared_state_keeps_responses_for_every_process(fakes: dict[str, Any], redis_url: str) -> None:
    text = _config(fakes, f"server:\n  shared_state: {redis_url}\n")
    with (
        serve_in_thread(create_app(parse_config(text))) as one,
        serve_in_thread(create_app(parse_config(text))) as two,
        openai.OpenAI(base_url=one.url + "/v1", api_key="k", max_retries=0) as first,
        openai.OpenAI(base_url=two.url + "/v1", api_key="k", max_retries=0) as second,
    ):
        response = first.responses.create(model="gemini", input="remember me")
        follow_up = second.responses.create(model="gemini", previous_response_id=response.id, input="and me")
        assert follow_up.output_text == "and me"
        assert second.responses.retrieve(response.id).output_text == "remember me"
        import redis

        ttl = redis.Redis.from_url(redis_url).ttl(f"gatewayctl:responses:{response.id}")
        assert 0 < ttl <= 30 * 24 * 3600
