"""A Bedrock route through the whole in-process gateway, against the fake Bedrock on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import orjson
import pytest

from gateway_server.app import create_app
from gateway_server.config import parse_config
from gateway_server.testing import serve_in_thread
from gateway_server.testing.fake_bedrock import FakeBedrock, bedrock_error

SECRET = "gateway-test-secret/value"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeBedrock]:
    with FakeBedrock(access_key="AKIDGATEWAY", secret_key=SECRET).serve() as served:
        yield served


@pytest.fixture(scope="module")
def client(fake: FakeBedrock) -> Iterator[httpx.Client]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TEST_AWS_SECRET", SECRET)
        config = parse_config(
            f"""
routes:
  - name: claude
    route_type: llm/v1/chat
    model:
      provider: Amazon-Bedrock
      name: anthropic.claude-3-haiku-20240307-v1:0
      config:
        aws_config:
          aws_region: us-east-1
          aws_access_key_id: AKIDGATEWAY
          aws_secret_access_key: $TEST_AWS_SECRET
          endpoint_url: {fake.url}
"""
        )
    with serve_in_thread(create_app(config)) as server, httpx.Client(base_url=server.url, timeout=10) as http:
        yield http


@pytest.fixture(autouse=True)
def _reset(fake: FakeBedrock) -> None:
    fake.reset()


def test_bedrock_route_is_listed_with_mlflows_provider_name(client: httpx.Client) -> None:
    route = client.get("/api/2.0/gateway/routes/claude").json()
    assert route["model"] == {"name": "anthropic.claude-3-haiku-20240307-v1:0", "provider": "bedrock"}


def test_bedrock_chat_seed_and_openai_shapes(client: httpx.Client) -> None:
    body = {"messages": [{"role": "user", "content": "hi there"}]}
    seed = client.post("/gateway/claude/invocations", json=body)
    assert seed.status_code == 200
    assert seed.json()["candidates"][0]["message"] == {"role": "assistant", "content": "hi there"}
    openai = client.post("/v1/chat/completions", json={**body, "model": "claude"}).json()
    assert openai["object"] == "chat.completion" and openai["usage"]["total_tokens"] == 4
    assert SECRET not in seed.text + str(openai)


def test_bedrock_stream_through_the_gateway(client: httpx.Client) -> None:
    body = {"messages": [{"role": "user", "content": "one two three"}], "stream": True}
    response = client.post("/endpoints/claude/invocations", json=body)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    blocks = [block[len("data: ") :] for block in response.text.split("\n\n") if block.startswith("data: ")]
    assert blocks[-1] == "[DONE]"
    chunks = [orjson.loads(block) for block in blocks[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert (
        "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
        == "one two three"
    )
    assert chunks[-1]["usage"]["total_tokens"] == 6


def test_bedrock_throttling_reaches_the_caller_as_429(client: httpx.Client, fake: FakeBedrock) -> None:
    fake.inject(bedrock_error("ThrottlingException", "Too many requests", headers={"Retry-After": "2"}))
    response = client.post(
        "/gateway/claude/invocations", json={"messages": [{"role": "user", "content": "x"}]}
    )
    assert response.status_code == 429 and response.headers["retry-after"] == "2"
    assert "ThrottlingException: Too many requests" in response.json()["error"]["message"]
