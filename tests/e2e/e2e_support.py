"""Constants and the config of the end-to-end gateway (shared by the e2e conftest and tests)."""

from __future__ import annotations

from typing import Any

import httpx

from gateway_server.routes import RouteType

SENTINEL = "sk-SENTINEL-do-not-leak-1234"
WRONG_KEY = "sk-wrong-key-0000"

CHAT_MODEL = "gpt-4o-mini"
COMPLETIONS_MODEL = "gpt-3.5-turbo-instruct"
EMBEDDINGS_MODEL = "text-embedding-3-small"
FAKE_MODEL = "fake-model"


def _route(name: str, route_type: RouteType, provider: str, model: str, config: dict[str, Any], **extra: Any):
    model_block = {"provider": provider, "name": model, "config": config}
    return {"name": name, "route_type": route_type.value, "model": model_block, **extra}


# Routes for the upstream-failure tests, one per test: the gateway keeps a circuit breaker per
# upstream model (provider + base URL + model), so each gets a model name of its own and the failures
# of one test never open the breaker of another. Each route's model is named like the route.
FAILING_ROUTES = (
    "fail-400",
    "fail-401-echo",
    "fail-429",
    "fail-500",
    "fail-503",
    "fail-non-json",
    "fail-drop",
    "fail-endpoints",
    "fail-v1",
)


def gateway_config(openai_base: str, closed_base: str) -> dict[str, Any]:
    openai = {"openai_api_key": SENTINEL, "openai_api_base": openai_base}
    routes = [
        _route("fake-chat", RouteType.CHAT, "fake", FAKE_MODEL, {}),
        _route("fake-completions", RouteType.COMPLETIONS, "fake", FAKE_MODEL, {}),
        _route("fake-embeddings", RouteType.EMBEDDINGS, "fake", FAKE_MODEL, {}),
        _route("openai-chat", RouteType.CHAT, "openai", CHAT_MODEL, openai),
        _route("openai-completions", RouteType.COMPLETIONS, "openai", COMPLETIONS_MODEL, openai),
        _route("openai-embeddings", RouteType.EMBEDDINGS, "openai", EMBEDDINGS_MODEL, openai),
        *(_route(name, RouteType.CHAT, "openai", name, openai) for name in FAILING_ROUTES),
        _route("leak-check", RouteType.CHAT, "openai", "leak-check", openai),
        _route("fail-slow", RouteType.CHAT, "openai", "fail-slow", openai, timeout=1),
        _route(
            "fail-closed",
            RouteType.CHAT,
            "openai",
            "fail-closed",
            {"openai_api_key": SENTINEL, "openai_api_base": closed_base},
        ),
        _route(
            "fail-wrong-key",
            RouteType.CHAT,
            "openai",
            "fail-wrong-key",
            {"openai_api_key": WRONG_KEY, "openai_api_base": openai_base},
        ),
    ]
    return {"routes": routes}


def assert_no_sentinel(response: httpx.Response) -> None:
    response.read()
    assert SENTINEL not in response.text, f"provider key leaked in the body of {response.request.url}"
    for name, value in response.headers.items():
        assert SENTINEL not in value, f"provider key leaked in header {name} of {response.request.url}"
