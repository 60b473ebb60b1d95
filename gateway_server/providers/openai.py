"""OpenAI, Azure OpenAI (``api-key`` header) and Azure AD (bearer token), for all three route types.

Validation follows MLflow's rules: Azure types need ``openai_api_base``, ``openai_deployment_name``
and ``openai_api_version`` and refuse ``openai_organization``; the plain OpenAI type refuses
``openai_deployment_name``. The upstream request is the standard (OpenAI-shaped) request with the
route's model injected; for Azure the deployment in the URL names the model instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar
from urllib.parse import quote

import orjson
from pydantic import field_validator, model_validator

from gateway_server.errors import UpstreamError
from gateway_server.providers.base import (
    Adapter,
    ProviderConfig,
    UpstreamRequest,
    origin_of,
    reason_from_body,
)
from gateway_server.providers.streaming import SSEDecoder, StreamEvent
from gateway_server.routes import RouteType
from gateway_server.secrets import Secret

__all__ = ["OpenAIAPIType", "OpenAIAdapter", "OpenAIConfig", "OpenAIWire", "OpenAIWireAdapter"]

DEFAULT_OPENAI_API_BASE = "https://api.openai.com/v1"


class OpenAIAPIType(StrEnum):
    OPENAI = "openai"
    AZURE = "azure"
    AZUREAD = "azuread"

    @classmethod
    def _missing_(cls, value: object) -> OpenAIAPIType | None:
        if isinstance(value, str):
            lowered = value.lower()
            for member in cls:
                if member.value == lowered:
                    return member
        return None


class OpenAIConfig(ProviderConfig):
    openai_api_key: Secret
    openai_api_type: OpenAIAPIType = OpenAIAPIType.OPENAI
    openai_api_base: str | None = None
    openai_api_version: str | None = None
    openai_deployment_name: str | None = None
    openai_organization: str | None = None

    @field_validator("openai_api_base")
    @classmethod
    def _check_base(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/") if value else value

    @model_validator(mode="after")
    def _check_type_fields(self) -> OpenAIConfig:
        if self.openai_api_type is OpenAIAPIType.OPENAI:
            if self.openai_deployment_name is not None:
                raise ValueError(
                    "openai_deployment_name is only for openai_api_type 'azure' or 'azuread'; "
                    "remove it, or set openai_api_type"
                )
            return self
        missing = [
            name
            for name in ("openai_api_base", "openai_deployment_name", "openai_api_version")
            if getattr(self, name) is None
        ]
        if missing:
            raise ValueError(
                f"openai_api_type '{self.openai_api_type.value}' needs {', '.join(missing)} "
                "(Azure OpenAI URLs are {base}/openai/deployments/{deployment}/...?api-version={version})"
            )
        if self.openai_organization is not None:
            raise ValueError(
                f"openai_organization is not allowed with openai_api_type '{self.openai_api_type.value}'"
            )
        return self


_PATHS = {
    RouteType.CHAT: "chat/completions",
    RouteType.COMPLETIONS: "completions",
    RouteType.EMBEDDINGS: "embeddings",
}


@dataclass(frozen=True, slots=True)
class OpenAIWire:
    """An OpenAI-shaped upstream: the URL per route type, the headers, whether ``model`` is sent."""

    urls: Mapping[RouteType, str]
    headers: Mapping[str, str]
    sends_model: bool
    origin: str

    @classmethod
    def at(
        cls, base: str, headers: Mapping[str, str], *, query: str = "", sends_model: bool = True
    ) -> OpenAIWire:
        return cls(
            urls={route_type: f"{base}/{path}{query}" for route_type, path in _PATHS.items()},
            headers={**headers, "Content-Type": "application/json"},
            sends_model=sends_model,
            origin=origin_of(base),
        )


class OpenAIWireAdapter(Adapter):
    """OpenAI's wire format: the transforms every OpenAI-shaped provider shares. A subclass says
    where and how it is reached by :meth:`openai_wire`, and narrows ``config`` to its own model."""

    def __init__(self, config: ProviderConfig, model_name: str | None) -> None:
        super().__init__(config, model_name)
        self.wire = self.openai_wire()
        self.origin = self.wire.origin

    def openai_wire(self) -> OpenAIWire:
        raise NotImplementedError

    def _request(self, route_type: RouteType, payload: dict[str, Any]) -> UpstreamRequest:
        body = {key: value for key, value in payload.items() if value is not None}
        wire = self.wire
        if wire.sends_model and self.model_name:
            body["model"] = self.model_name
        else:
            body.pop("model", None)
        return UpstreamRequest(url=wire.urls[route_type], headers=wire.headers, body=body)

    def build_chat_request(self, payload: dict[str, Any]) -> UpstreamRequest:
        return self._request(RouteType.CHAT, payload)

    def build_completions_request(self, payload: dict[str, Any]) -> UpstreamRequest:
        return self._request(RouteType.COMPLETIONS, payload)

    def build_embeddings_request(self, payload: dict[str, Any]) -> UpstreamRequest:
        return self._request(RouteType.EMBEDDINGS, payload)

    def build_stream_request(self, route_type: RouteType, payload: dict[str, Any]) -> UpstreamRequest:
        request = super().build_stream_request(route_type, payload)
        request.body["stream_options"] = {**(request.body.get("stream_options") or {}), "include_usage": True}
        # Without include_usage OpenAI sends no usage in a stream at all, and the gateway's final
        # chunk carries the usage; parse_stream_event puts it where the caller expects it.
        request.body["stream"] = True
        return request

    def stream_decoder(self) -> SSEDecoder:
        return _EndingDecoder()

    def parse_stream_event(
        self, route_type: RouteType, event: StreamEvent, state: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """One standard chunk per OpenAI event, with the usage where the caller expects it.

        OpenAI ends an ``include_usage`` stream with a separate chunk whose ``choices`` is empty.
        The gateway asks for it on every stream (usage counts, limits, metrics), but a caller who
        did not ask would crash on that chunk in the usual ``chunk["choices"][0]`` loop. So unless
        the caller set ``stream_options.include_usage`` itself, the chunks that finish a choice are
        held until the usage arrives and the last of them carries it: the final chunk has its
        choice and the usage. A chunk with no choices and no usage carries nothing and is dropped.
        """
        if event.data == "[DONE]":
            held: list[dict[str, Any]] = state.pop("held", [])  # no usage came: release what was held
            return held
        data = orjson.loads(event.data)
        if "error" in data:  # OpenAI reports a failure after the first byte as an event
            reason = reason_from_body(data, "error event in the stream")
            raise UpstreamError(f"{self.name} failed mid-stream: {reason}", provider=self.name, reason=reason)
        chunk: dict[str, Any] = {
            "object": "chat.completion.chunk" if route_type is RouteType.CHAT else "text_completion",
            "model": data.get("model") or self.model_name,
            "choices": data.get("choices") or [],
        }
        for key in ("id", "created", "usage", "system_fingerprint"):
            if data.get(key) is not None:
                chunk[key] = data[key]
        choices = chunk["choices"]
        if not choices and "usage" not in chunk:
            return []
        asked = state.get("caller_asked_usage")
        if asked is None:
            asked = state["caller_asked_usage"] = _caller_asked_usage(state.get("payload"))
        if asked:
            return [chunk]
        if not choices:  # the usage-only chunk: onto the held final chunk(s)
            finishing: list[dict[str, Any]] = state.pop("held", [])
            if not finishing:  # no finishing chunk seen: give the usage an empty choice to stand on
                empty: dict[str, Any] = {"delta": {}} if route_type is RouteType.CHAT else {"text": ""}
                chunk["choices"] = [{"index": 0, **empty, "finish_reason": None}]
                return [chunk]
            finishing[-1]["usage"] = chunk["usage"]
            return finishing
        finished = (
            choices[0].get("finish_reason")
            if len(choices) == 1
            else any(choice.get("finish_reason") for choice in choices)
        )
        if finished and "usage" not in chunk:
            state.setdefault("held", []).append(chunk)
            return []
        if "held" in state:
            return [*state.pop("held"), chunk]
        return [chunk]

    # OpenAI already answers in the standard shapes; parsing checks the shape and keeps only
    # documented fields, so a drifting upstream fails loudly instead of leaking odd keys.

    def parse_chat_response(self, body: dict[str, Any]) -> dict[str, Any]:
        choices = []
        for index, choice in enumerate(body["choices"]):
            message = choice["message"]
            out_message: dict[str, Any] = {
                "role": message.get("role", "assistant"),
                "content": message.get("content"),
            }
            if message.get("tool_calls"):
                out_message["tool_calls"] = message["tool_calls"]
            if message.get("refusal"):
                out_message["refusal"] = message["refusal"]
            choices.append(
                {
                    "index": choice.get("index", index),
                    "message": out_message,
                    "finish_reason": choice.get("finish_reason"),
                }
            )
        return _with_envelope(body, "chat.completion", choices, self.model_name)

    def parse_completions_response(self, body: dict[str, Any]) -> dict[str, Any]:
        choices = [
            {
                "index": choice.get("index", index),
                "text": choice["text"],
                "finish_reason": choice.get("finish_reason"),
            }
            for index, choice in enumerate(body["choices"])
        ]
        return _with_envelope(body, "text_completion", choices, self.model_name)

    def parse_embeddings_response(self, body: dict[str, Any]) -> dict[str, Any]:
        data = [
            {"object": "embedding", "index": item.get("index", index), "embedding": item["embedding"]}
            for index, item in enumerate(body["data"])
        ]
        usage = body.get("usage") or {}
        return {
            "object": "list",
            "data": data,
            "model": body.get("model") or self.model_name,
            "usage": {"prompt_tokens": usage.get("prompt_tokens"), "total_tokens": usage.get("total_tokens")},
        }


class OpenAIAdapter(OpenAIWireAdapter, provider="openai"):
    config_model: ClassVar[type[ProviderConfig]] = OpenAIConfig
    config: OpenAIConfig

    def openai_wire(self) -> OpenAIWire:
        config = self.config
        api_type = config.openai_api_type
        key = config.openai_api_key.get()
        if api_type is OpenAIAPIType.AZURE:
            headers = {"api-key": key}
        else:
            headers = {"Authorization": f"Bearer {key}"}
            if config.openai_organization:
                headers["OpenAI-Organization"] = config.openai_organization
        query = (
            f"?api-version={quote(config.openai_api_version, safe='')}" if config.openai_api_version else ""
        )
        if api_type is OpenAIAPIType.OPENAI:
            return OpenAIWire.at(config.openai_api_base or DEFAULT_OPENAI_API_BASE, headers, query=query)
        deployment = quote(config.openai_deployment_name or "", safe="")
        return OpenAIWire.at(
            f"{config.openai_api_base}/openai/deployments/{deployment}",
            headers,
            query=query,
            sends_model=False,
        )


def _with_envelope(
    body: dict[str, Any], obj: str, choices: list[dict[str, Any]], model: str | None
) -> dict[str, Any]:
    usage = body.get("usage") or {}
    result: dict[str, Any] = {
        "object": obj,
        "model": body.get("model") or model,
        "choices": choices,
        "usage": {
            "prompt_tokens": usage.get("prompt_tokens"),
            "completion_tokens": usage.get("completion_tokens"),
            "total_tokens": usage.get("total_tokens"),
        },
    }
    if body.get("id"):
        result["id"] = body["id"]
    if body.get("created"):
        result["created"] = body["created"]
    return result


def _caller_asked_usage(payload: Any) -> bool:
    """Whether the caller's own request set ``stream_options.include_usage``."""
    options = payload.get("stream_options") if isinstance(payload, dict) else None
    return isinstance(options, dict) and bool(options.get("include_usage"))


class _EndingDecoder(SSEDecoder):
    """SSE, plus a ``[DONE]`` at the end of the body, so chunks held for the usage always go out
    (after OpenAI's own ``[DONE]`` it finds nothing held, and adds nothing)."""

    __slots__ = ()

    def close(self) -> list[StreamEvent]:
        return [*super().close(), StreamEvent("[DONE]")]
