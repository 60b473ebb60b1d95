"""OpenAPI entries for the invocation paths.

The invocation paths are bare ASGI handlers (``api/invocations.py``), so FastAPI does not see
them; their documented request and response schemas are declared here, once, and merged into
``/openapi.json``. These models are for documentation only: requests are checked by
``gateway_server.schemas`` and extra keys are passed to the provider.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict, Field

from gateway_server.api import paths

__all__ = ["install_openapi"]


class _Doc(BaseModel):
    model_config = ConfigDict(extra="allow")


class Message(_Doc):
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[dict[str, Any]] | None


class ChatRequest(_Doc):
    messages: list[Message] = Field(min_length=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1)
    stop: str | list[str] | None = None
    n: int | None = Field(default=None, ge=1)
    candidate_count: int | None = Field(default=None, ge=1, description="seed-era name of n")
    tools: list[dict[str, Any]] | None = None
    stream: bool | None = None


class CompletionsRequest(_Doc):
    prompt: str | list[str]
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1)
    stop: str | list[str] | None = None
    n: int | None = Field(default=None, ge=1)
    stream: bool | None = None


class EmbeddingsRequest(_Doc):
    input: str | list[str] | None = None
    text: str | list[str] | None = Field(default=None, description="seed-era name of input")


class V1ChatRequest(ChatRequest):
    model: str = Field(description="the gateway route to use")


class V1CompletionsRequest(CompletionsRequest):
    model: str = Field(description="the gateway route to use")


class V1EmbeddingsRequest(EmbeddingsRequest):
    model: str = Field(description="the gateway route to use")


class MessagesRequest(_Doc):
    """Anthropic's Messages API (docs/agents.md)."""

    model: str = Field(description="a chat route or one of its aliases")
    max_tokens: int = Field(ge=1)
    messages: list[dict[str, Any]] = Field(min_length=1)
    system: str | list[dict[str, Any]] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: dict[str, Any] | None = None
    temperature: float | None = Field(default=None, ge=0, le=1)
    stream: bool | None = None


class CountTokensRequest(_Doc):
    model: str = Field(description="a chat route or one of its aliases")
    messages: list[dict[str, Any]] = Field(min_length=1)
    system: str | list[dict[str, Any]] | None = None


class ResponsesRequest(_Doc):
    """OpenAI's Responses API (docs/agents.md)."""

    model: str = Field(description="a chat route or one of its aliases")
    input: str | list[dict[str, Any]]
    instructions: str | None = None
    tools: list[dict[str, Any]] | None = None
    previous_response_id: str | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    store: bool | None = None
    stream: bool | None = None


class ErrorBody(BaseModel):
    message: str
    type: str
    code: int


class ErrorEnvelope(BaseModel):
    error: ErrorBody
    detail: str


_DOCS: list[tuple[str, str, type[BaseModel], str]] = [
    (
        paths.route_invocations("{name}"),
        "Query a route (seed-era request and response shapes)",
        ChatRequest,
        "route",
    ),
    (paths.endpoint_invocations("{name}"), "Query an endpoint (OpenAI shapes)", ChatRequest, "endpoint"),
    (paths.V1_CHAT, "OpenAI-compatible chat completions; 'model' names the route", V1ChatRequest, ""),
    (
        paths.V1_COMPLETIONS,
        "OpenAI-compatible completions; 'model' names the route",
        V1CompletionsRequest,
        "",
    ),
    (paths.V1_EMBEDDINGS, "OpenAI-compatible embeddings; 'model' names the route", V1EmbeddingsRequest, ""),
    (
        paths.V1_MESSAGES,
        "Anthropic Messages API on any chat route (Anthropic error shape)",
        MessagesRequest,
        "",
    ),
    (
        paths.V1_MESSAGES_COUNT_TOKENS,
        "Anthropic token count (an estimate off Anthropic routes)",
        CountTokensRequest,
        "",
    ),
    (paths.V1_RESPONSES, "OpenAI Responses API on any chat route", ResponsesRequest, ""),
]


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _operation(summary: str, bodies: list[type[BaseModel]], named: str) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "tags": ["invocations"],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"anyOf": [_ref(body) for body in bodies]}}},
        },
        "responses": {
            "200": {
                "description": "The answer in the route type's standard shape (text/event-stream when streaming)"
            },
            **{
                code: {"description": text, "content": {"application/json": {"schema": _ref(ErrorEnvelope)}}}
                for code, text in (
                    ("400", "Invalid request; the message names the field"),
                    ("404", "Unknown route"),
                    ("413", "Request body too large"),
                    ("429", "Rate limited (upstream or gateway); see Retry-After"),
                    ("501", "The provider does not offer this route type"),
                    ("502", "Upstream failure"),
                    ("504", "Upstream timeout"),
                )
            },
        },
    }
    if named:
        operation["parameters"] = [
            {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
        ]
    return operation


def install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        models: list[type[BaseModel]] = [
            ChatRequest,
            CompletionsRequest,
            EmbeddingsRequest,
            V1ChatRequest,
            V1CompletionsRequest,
            V1EmbeddingsRequest,
            MessagesRequest,
            CountTokensRequest,
            ResponsesRequest,
            ErrorEnvelope,
            ErrorBody,
            Message,
        ]
        for model in models:
            definition = model.model_json_schema(ref_template="#/components/schemas/{model}")
            for name, sub in definition.pop("$defs", {}).items():
                components.setdefault(name, sub)
            components[model.__name__] = definition
        for path, summary, body, named in _DOCS:
            bodies: list[type[BaseModel]] = (
                [body] if not named else [ChatRequest, CompletionsRequest, EmbeddingsRequest]
            )
            schema["paths"][path] = {"post": _operation(summary, bodies, named)}
        stored = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
        schema["paths"][paths.V1_RESPONSE_PREFIX + "{id}"] = {
            method: {
                "summary": summary,
                "tags": ["invocations"],
                "parameters": [stored],
                "responses": {
                    "200": {"description": "The stored response"},
                    "404": {"description": "Not stored"},
                },
            }
            for method, summary in (("get", "A stored response"), ("delete", "Delete a stored response"))
        }
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
