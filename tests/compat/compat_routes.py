"""The routes of the compatibility gateway (shared by the compat conftest and tests)."""

from __future__ import annotations

from typing import Any

API_KEY = "sk-compat-0123456789"
CHAT_MODEL = "gpt-4o-mini"
COMPLETIONS_MODEL = "gpt-3.5-turbo-instruct"
EMBEDDINGS_MODEL = "text-embedding-3-small"
ROUTES = {  # name -> (route type, model)
    "chat": ("llm/v1/chat", CHAT_MODEL),
    "completions": ("llm/v1/completions", COMPLETIONS_MODEL),
    "embeddings": ("llm/v1/embeddings", EMBEDDINGS_MODEL),
    "failing-chat": ("llm/v1/chat", "failing-model"),  # the upstream-error test's own circuit breaker
}
FILLER_ROUTES = 3000  # MLflow's page size: with ROUTES, the fluent search_routes() needs two pages
PAGE_SIZE = 3000


def route_names() -> list[str]:
    return [*ROUTES, *(f"filler-{i:04d}" for i in range(FILLER_ROUTES))]


def gateway_config(api_base: str) -> dict[str, Any]:
    def route(name: str, route_type: str, model: str) -> dict[str, Any]:
        config = {"openai_api_key": API_KEY, "openai_api_base": api_base}
        return {
            "name": name,
            "route_type": route_type,
            "model": {"provider": "openai", "name": model, "config": config},
        }

    routes = [route(name, route_type, model) for name, (route_type, model) in ROUTES.items()]
    routes += [route(name, "llm/v1/chat", CHAT_MODEL) for name in route_names()[len(ROUTES) :]]
    return {"routes": routes}
