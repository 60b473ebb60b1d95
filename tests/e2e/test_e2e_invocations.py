"""The real gateway process answers all three route types on all three path families, with the
offline ``fake`` provider and with ``openai`` pointed at a fake OpenAI upstream.

Path families: ``/gateway/{name}/invocations`` (seed-era shapes), ``/endpoints/{name}/invocations``
and ``/v1/*`` (OpenAI shapes, the route named by ``model``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from e2e_support import CHAT_MODEL, COMPLETIONS_MODEL, EMBEDDINGS_MODEL, FAKE_MODEL, SENTINEL

from gateway_server.providers.fake import fake_embedding as fake_provider_embedding
from gateway_server.testing import FakeOpenAI, count_tokens
from gateway_server.testing import fake_embedding as fake_openai_embedding
from gateway_server.testing.process import GatewayProcess

pytestmark = pytest.mark.e2e

FAKE_PREFIX = "This is the fake provider answering:"
QUESTION = "what is the capital of France"
PROMPT = "one small step for"
TEXTS = ["it was the best of times", "it was the worst of times"]


@dataclass(frozen=True)
class Provider:
    name: str
    models: dict[str, str]  # route kind -> model name the answer reports
    answer: Callable[[str], str]
    embedding: Callable[[str], list[float]]


FAKE = Provider(
    "fake",
    {"chat": FAKE_MODEL, "completions": FAKE_MODEL, "embeddings": FAKE_MODEL},
    lambda text: f"{FAKE_PREFIX} {text}",
    lambda text: fake_provider_embedding(text, 8),
)
OPENAI = Provider(
    "openai",
    {"chat": CHAT_MODEL, "completions": COMPLETIONS_MODEL, "embeddings": EMBEDDINGS_MODEL},
    lambda text: text,  # the fake upstream echoes
    lambda text: fake_openai_embedding(text, 8),
)
PROVIDERS = [pytest.param(FAKE, id="fake"), pytest.param(OPENAI, id="openai")]


def _usage(prompt: str, answer: str) -> dict[str, int]:
    return {
        "prompt_tokens": count_tokens(prompt),
        "completion_tokens": count_tokens(answer),
        "total_tokens": count_tokens(prompt) + count_tokens(answer),
    }


def _post(http: httpx.Client, family: str, route: str, kind: str, body: dict[str, Any]) -> dict[str, Any]:
    if family == "gateway":
        response = http.post(f"/gateway/{route}/invocations", json=body)
    elif family == "endpoints":
        response = http.post(f"/endpoints/{route}/invocations", json=body)
    else:
        path = {
            "chat": "/v1/chat/completions",
            "completions": "/v1/completions",
            "embeddings": "/v1/embeddings",
        }
        response = http.post(path[kind], json={"model": route, **body})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    return response.json()


def _openai_envelope(answer: dict[str, Any], obj: str, id_prefix: str) -> dict[str, Any]:
    """Check and drop the fields that vary per call (id, created)."""
    answer = dict(answer)
    assert answer.pop("id").startswith(id_prefix)
    assert isinstance(answer.pop("created"), int)
    assert answer["object"] == obj
    return answer


def _check_upstream(provider: Provider, upstream: FakeOpenAI, path: str, sent: dict[str, Any]) -> None:
    if provider is FAKE:
        assert upstream.requests == [], "the fake provider must not call any upstream"
        return
    (request,) = upstream.requests
    assert request.path == f"/v1/{path}"
    assert request.headers["authorization"] == f"Bearer {SENTINEL}"
    assert request.json == sent


# ------------------------------------------------------------------ seed-era shapes


@pytest.mark.parametrize("provider", PROVIDERS)
def test_gateway_chat(http: httpx.Client, e2e_openai: FakeOpenAI, provider: Provider) -> None:
    messages = [{"role": "user", "content": QUESTION}]
    answer = _post(http, "gateway", f"{provider.name}-chat", "chat", {"messages": messages})
    text = provider.answer(QUESTION)
    usage = _usage(QUESTION, text)
    assert answer == {
        "candidates": [
            {"message": {"role": "assistant", "content": text}, "metadata": {"finish_reason": "stop"}}
        ],
        "metadata": {
            "input_tokens": usage["prompt_tokens"],
            "output_tokens": usage["completion_tokens"],
            "total_tokens": usage["total_tokens"],
            "model": provider.models["chat"],
            "route_type": "llm/v1/chat",
        },
    }
    _check_upstream(provider, e2e_openai, "chat/completions", {"model": CHAT_MODEL, "messages": messages})


@pytest.mark.parametrize("provider", PROVIDERS)
def test_gateway_chat_seed_parameters(http: httpx.Client, e2e_openai: FakeOpenAI, provider: Provider) -> None:
    """candidate_count is the seed's name for n; max_tokens cuts the answer (finish_reason length)."""
    body = {
        "messages": [{"role": "user", "content": QUESTION}],
        "candidate_count": 2,
        "max_tokens": 2,
        "temperature": 0.5,
    }
    answer = _post(http, "gateway", f"{provider.name}-chat", "chat", body)
    words = provider.answer(QUESTION).split()[:2]
    expected = {
        "message": {"role": "assistant", "content": " ".join(words)},
        "metadata": {"finish_reason": "length"},
    }
    assert answer["candidates"] == [expected, expected]
    assert answer["metadata"]["route_type"] == "llm/v1/chat"
    _check_upstream(
        provider,
        e2e_openai,
        "chat/completions",
        {"model": CHAT_MODEL, "messages": body["messages"], "n": 2, "max_tokens": 2, "temperature": 0.5},
    )


@pytest.mark.parametrize("provider", PROVIDERS)
def test_gateway_completions(http: httpx.Client, e2e_openai: FakeOpenAI, provider: Provider) -> None:
    answer = _post(http, "gateway", f"{provider.name}-completions", "completions", {"prompt": PROMPT})
    text = provider.answer(PROMPT)
    usage = _usage(PROMPT, text)
    assert answer == {
        "candidates": [{"text": text, "metadata": {"finish_reason": "stop"}}],
        "metadata": {
            "input_tokens": usage["prompt_tokens"],
            "output_tokens": usage["completion_tokens"],
            "total_tokens": usage["total_tokens"],
            "model": provider.models["completions"],
            "route_type": "llm/v1/completions",
        },
    }
    _check_upstream(provider, e2e_openai, "completions", {"model": COMPLETIONS_MODEL, "prompt": PROMPT})


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("text", [TEXTS, TEXTS[0]], ids=["list", "string"])
def test_gateway_embeddings(
    http: httpx.Client, e2e_openai: FakeOpenAI, provider: Provider, text: str | list[str]
) -> None:
    answer = _post(http, "gateway", f"{provider.name}-embeddings", "embeddings", {"text": text})
    texts = text if isinstance(text, list) else [text]
    tokens = sum(count_tokens(t) for t in texts)
    assert answer == {
        "embeddings": [provider.embedding(t) for t in texts],
        "metadata": {
            "input_tokens": tokens,
            "output_tokens": 0,
            "total_tokens": tokens,
            "model": provider.models["embeddings"],
            "route_type": "llm/v1/embeddings",
        },
    }
    # The seed's ``text`` reaches the upstream as OpenAI's ``input``.
    _check_upstream(provider, e2e_openai, "embeddings", {"model": EMBEDDINGS_MODEL, "input": text})


# ------------------------------------------------------------------ OpenAI shapes


@pytest.mark.parametrize("family", ["endpoints", "v1"])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_openai_shape_chat(
    http: httpx.Client, e2e_openai: FakeOpenAI, provider: Provider, family: str
) -> None:
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": QUESTION}]
    answer = _openai_envelope(
        _post(http, family, f"{provider.name}-chat", "chat", {"messages": messages}),
        "chat.completion",
        "chatcmpl-",
    )
    text = provider.answer(QUESTION)
    prompt = "be brief " + QUESTION
    assert answer == {
        "object": "chat.completion",
        "model": provider.models["chat"],
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": _usage(prompt, text),
    }
    _check_upstream(provider, e2e_openai, "chat/completions", {"model": CHAT_MODEL, "messages": messages})


@pytest.mark.parametrize("family", ["endpoints", "v1"])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_openai_shape_completions(
    http: httpx.Client, e2e_openai: FakeOpenAI, provider: Provider, family: str
) -> None:
    body = {"prompt": PROMPT, "n": 2}
    answer = _openai_envelope(
        _post(http, family, f"{provider.name}-completions", "completions", body), "text_completion", "cmpl-"
    )
    text = provider.answer(PROMPT)
    usage = _usage(PROMPT, text)
    usage["completion_tokens"] *= 2
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    assert answer == {
        "object": "text_completion",
        "model": provider.models["completions"],
        "choices": [{"index": i, "text": text, "finish_reason": "stop"} for i in range(2)],
        "usage": usage,
    }
    _check_upstream(provider, e2e_openai, "completions", {"model": COMPLETIONS_MODEL, **body})


@pytest.mark.parametrize("family", ["endpoints", "v1"])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_openai_shape_embeddings(
    http: httpx.Client, e2e_openai: FakeOpenAI, provider: Provider, family: str
) -> None:
    answer = _post(http, family, f"{provider.name}-embeddings", "embeddings", {"input": TEXTS})
    tokens = sum(count_tokens(t) for t in TEXTS)
    assert answer == {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": provider.embedding(t)}
            for i, t in enumerate(TEXTS)
        ],
        "model": provider.models["embeddings"],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    _check_upstream(provider, e2e_openai, "embeddings", {"model": EMBEDDINGS_MODEL, "input": TEXTS})


@pytest.mark.parametrize("family", ["gateway", "endpoints"])
def test_model_in_body_is_ignored_on_named_routes(
    http: httpx.Client, e2e_openai: FakeOpenAI, family: str
) -> None:
    """SPEC §3: a ``model`` on /gateway and /endpoints is ignored (MLflow answers 422); the route's model is used."""
    messages = [{"role": "user", "content": QUESTION}]
    _post(http, family, "openai-chat", "chat", {"messages": messages, "model": "gpt-something-else"})
    assert e2e_openai.last_request.json["model"] == CHAT_MODEL


# ------------------------------------------------------------------ listings


def test_health_and_listings(http: httpx.Client, gateway: GatewayProcess) -> None:
    assert http.get("/health").json() == {"status": "OK"}

    routes = http.get("/api/2.0/gateway/routes/").json()["routes"]
    chat = next(route for route in routes if route["name"] == "openai-chat")
    assert chat == {
        "name": "openai-chat",
        "route_type": "llm/v1/chat",
        "model": {"name": CHAT_MODEL, "provider": "openai"},
        "route_url": "/gateway/openai-chat/invocations",
    }
    assert http.get("/api/2.0/gateway/routes/openai-chat").json() == chat

    endpoints = http.get("/api/2.0/endpoints/").json()["endpoints"]
    assert {e["name"] for e in endpoints} == {r["name"] for r in routes}
    endpoint = http.get("/api/2.0/endpoints/fake-embeddings").json()
    assert endpoint["endpoint_type"] == "llm/v1/embeddings"
    assert endpoint["model"] == {"name": FAKE_MODEL, "provider": "fake"}

    models = http.get("/v1/models").json()
    assert models["object"] == "list"
    assert {m["id"] for m in models["data"]} == {r["name"] for r in routes}
    assert gateway.alive
