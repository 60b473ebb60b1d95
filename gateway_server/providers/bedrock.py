"""Amazon Bedrock: chat and completions through the Converse API, embeddings through InvokeModel.

- chat / completions: ``POST {endpoint}/model/{modelId}/converse`` (``/converse-stream`` for
  ``"stream": true``, answered in AWS's binary event stream). System messages go to Converse's
  ``system``, tools to ``toolConfig``, tool calls and tool results to ``toolUse``/``toolResult``
  content blocks; ``stopReason`` becomes ``finish_reason``.
- embeddings: ``POST {endpoint}/model/{modelId}/invoke`` with the model family's own body: Amazon
  Titan text embeddings (one text per call) or Cohere Embed (a list of texts).
- every request is signed with SigV4 over the exact bytes sent (``providers/_aws.py``), or carries
  ``Authorization: Bearer`` for a Bedrock API key (``aws_bearer_token``).

``aws_config`` takes MLflow's forms: ``{aws_region}`` (default credential chain), ``{aws_access_key_id,
aws_secret_access_key, aws_session_token?, aws_region}``, ``{aws_role_arn, session_length_seconds,
aws_region}`` and ``{aws_bearer_token, aws_region}``; ``endpoint_url`` replaces
``https://bedrock-runtime.{region}.amazonaws.com``. The region falls back to ``AWS_REGION`` /
``AWS_DEFAULT_REGION``.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import orjson
from pydantic import Field, field_validator, model_validator

from gateway_server.errors import InvalidRequestError, UpstreamConnectionError, UpstreamStatusError
from gateway_server.providers import _aws
from gateway_server.providers._bedrock_converse import (
    chat_from_converse,
    converse_request,
    finish_reason,
    usage_from_converse,
)
from gateway_server.providers._translate import (
    base_url,
    chat_chunks_to_completions,
    chat_to_completions,
    completions_to_chat,
    event_json,
    shape_error,
)
from gateway_server.providers.base import (
    Adapter,
    ProviderConfig,
    UpstreamRequest,
    origin_of,
    reason_from_body,
)
from gateway_server.providers.streaming import StreamEvent, chat_chunk
from gateway_server.routes import RouteType
from gateway_server.secrets import Secret

__all__ = ["AWSConfig", "BedrockAdapter", "BedrockConfig"]

_KEY_FIELDS = ("aws_access_key_id", "aws_secret_access_key", "aws_session_token")


class AWSConfig(ProviderConfig):
    """``aws_config``: region, one way of authenticating, and an optional endpoint override."""

    aws_region: str | None = None
    aws_access_key_id: Secret | None = None
    aws_secret_access_key: Secret | None = None
    aws_session_token: Secret | None = None
    aws_role_arn: str | None = None
    session_length_seconds: int = Field(default=900, ge=900, le=43200)
    aws_bearer_token: Secret | None = None
    endpoint_url: str | None = None

    @field_validator("endpoint_url")
    @classmethod
    def _check_endpoint(cls, value: str | None) -> str | None:
        return base_url(value) if value is not None else None

    @model_validator(mode="after")
    def _one_form(self) -> AWSConfig:
        keys = [name for name in _KEY_FIELDS if getattr(self, name) is not None]
        forms = [
            name
            for name, present in (
                ("aws_access_key_id/aws_secret_access_key", bool(keys)),
                ("aws_role_arn", self.aws_role_arn is not None),
                ("aws_bearer_token", self.aws_bearer_token is not None),
            )
            if present
        ]
        if len(forms) > 1:
            raise ValueError(f"give one way to authenticate, not {' and '.join(forms)}")
        if keys and (self.aws_access_key_id is None or self.aws_secret_access_key is None):
            raise ValueError("aws_access_key_id and aws_secret_access_key go together; give both")
        if self.aws_region is None:
            region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
            if not region:
                raise ValueError("aws_region is required (or set AWS_REGION in the environment)")
            object.__setattr__(self, "aws_region", region)
        return self

    @property
    def region(self) -> str:
        assert self.aws_region is not None  # filled by the validator
        return self.aws_region


class BedrockConfig(ProviderConfig):
    aws_config: AWSConfig

    def server_identity_field(self) -> str | None:
        aws = self.aws_config
        if aws.aws_role_arn is not None:
            return "aws_config.aws_role_arn"  # assumed with the server's own credentials
        if aws.aws_access_key_id is None and aws.aws_bearer_token is None:
            return "aws_config"  # the default credential chain: the server's environment and role
        return None


def _credentials(config: AWSConfig) -> _aws.CredentialSource:
    if config.aws_access_key_id is not None and config.aws_secret_access_key is not None:
        token = config.aws_session_token.get() if config.aws_session_token else None
        return _aws.static_credentials(
            config.aws_access_key_id.get(), config.aws_secret_access_key.get(), token
        )
    if config.aws_role_arn is not None:
        return _aws.assumed_role_credentials(
            config.aws_role_arn, config.region, config.session_length_seconds
        )
    return _aws.default_chain_credentials(config.region)


# Bedrock's error types (header ``x-amzn-ErrorType``) → the status the gateway's table sees.
# ModelNotReadyException arrives as a 429 but is not the caller's rate: it is a temporary outage.
_ERROR_STATUS = {
    "ValidationException": 400,
    "AccessDeniedException": 403,
    "UnrecognizedClientException": 403,
    "ResourceNotFoundException": 404,
    "ThrottlingException": 429,
    "ServiceQuotaExceededException": 429,
    "ModelTimeoutException": 504,
    "ModelErrorException": 502,
    "InternalServerException": 500,
    "ModelNotReadyException": 503,
    "ServiceUnavailableException": 503,
    "ModelStreamErrorException": 502,
}


def error_type(value: str | None) -> str | None:
    """``ValidationException:http://internal.amazon.com/...`` → ``ValidationException``."""
    if not value:
        return None
    return value.split(":", 1)[0].strip() or None


class BedrockAdapter(Adapter, provider="bedrock"):
    config_model = BedrockConfig
    config: BedrockConfig

    @classmethod
    def base_url_of(cls, config: ProviderConfig) -> str:
        assert isinstance(config, BedrockConfig)
        aws = config.aws_config
        return aws.endpoint_url or f"https://bedrock-runtime.{aws.region}.amazonaws.com"

    def __init__(
        self,
        config: BedrockConfig,
        model_name: str | None,
        *,
        clock: Callable[[], dt.datetime] = _aws.utc_now,
    ) -> None:
        super().__init__(config, model_name)
        aws = config.aws_config
        base = self.base_url_of(config)
        self.model_url = f"{base}/model/{quote(model_name or '', safe='')}"
        self.origin = origin_of(base)
        self.signer: _aws.SigV4Signer | None = None
        self.bearer: str | None = None
        if aws.aws_bearer_token is not None:
            self.bearer = f"Bearer {aws.aws_bearer_token.get()}"
        else:
            self.credentials = _credentials(aws)
            self.signer = _aws.SigV4Signer(self.credentials.frozen, aws.region, "bedrock", clock)
            self.refresh = self._refresh_credentials  # the client awaits it before building a request
        self.family = _embedding_family(model_name or "")

    async def _refresh_credentials(self) -> None:
        """Resolve or refresh the AWS credentials in a worker thread when they are due (the first
        call, then before expiry): the blocking botocore calls never run on the event loop."""
        try:
            await self.credentials.refresh()
        except Exception as exc:  # botocore's NoCredentialsError, STS ClientError, LookupError, ...
            raise UpstreamConnectionError(
                f"cannot get AWS credentials for {self.display_name}: {type(exc).__name__}: {exc}",
                provider=self.name,
            ) from exc

    # ----------------------------------------------------------- requests

    def _request(self, operation: str, body: dict[str, Any], accept: str) -> UpstreamRequest:
        """The signed request: the only impure step (the clock and the credentials)."""
        raw = orjson.dumps(body)
        url = f"{self.model_url}/{operation}"
        headers = {"Content-Type": "application/json", "Accept": accept}
        if self.bearer is not None:
            headers["Authorization"] = self.bearer
        else:
            assert self.signer is not None
            try:
                headers = self.signer.sign("POST", url, headers, raw)
            except LookupError as exc:
                raise UpstreamConnectionError(
                    f"cannot sign the request to {self.display_name}: {exc}", provider=self.name
                ) from exc
        return UpstreamRequest(url=url, headers=headers, body=body, raw_body=raw)

    def build_chat_request(self, payload: dict[str, Any]) -> UpstreamRequest:
        return self._request("converse", converse_request(payload), "application/json")

    def build_completions_request(self, payload: dict[str, Any]) -> UpstreamRequest:
        chat = completions_to_chat(payload, self.display_name)
        return self._request("converse", converse_request(chat), "application/json")

    def build_stream_request(self, route_type: RouteType, payload: dict[str, Any]) -> UpstreamRequest:
        if route_type not in self.streaming_route_types:
            return super().build_stream_request(route_type, payload)
        if route_type is RouteType.COMPLETIONS:
            payload = completions_to_chat(payload, self.display_name)
        return self._request(
            "converse-stream", converse_request(payload), "application/vnd.amazon.eventstream"
        )

    def build_embeddings_request(self, payload: dict[str, Any]) -> UpstreamRequest:
        texts = _texts(payload.get("input"))
        if self.family == "cohere":
            body: dict[str, Any] = {
                "texts": texts,
                "input_type": payload.get("input_type", "search_document"),
            }
        elif self.family == "titan":
            if len(texts) != 1:
                raise InvalidRequestError(
                    f"Amazon Titan embeds one text per request; this request has {len(texts)}. "
                    "Send one input, or use a Cohere Embed model for batches.",
                    param="input",
                )
            body = {"inputText": texts[0]}
            if payload.get("dimensions") is not None:
                body["dimensions"] = payload["dimensions"]
        else:
            raise InvalidRequestError(
                f"Bedrock model '{self.model_name}' is not an embedding model this gateway knows "
                "(Amazon Titan text embeddings, 'amazon.titan-embed-*', or Cohere Embed, 'cohere.embed-*').",
                param="model",
            )
        return self._request("invoke", body, "application/json")

    # ----------------------------------------------------------- responses

    def parse_chat_response(self, body: dict[str, Any]) -> dict[str, Any]:
        return chat_from_converse(body, self.model_name)

    def parse_completions_response(self, body: dict[str, Any]) -> dict[str, Any]:
        return chat_to_completions(chat_from_converse(body, self.model_name))

    def parse_embeddings_response(self, body: dict[str, Any]) -> dict[str, Any]:
        if "embedding" in body:  # Titan
            vectors = [body["embedding"]]
            tokens = body.get("inputTextTokenCount")
        else:  # Cohere: a list of vectors, or {"float": [...]} when embedding_types was given
            embeddings = body["embeddings"]
            vectors = embeddings["float"] if isinstance(embeddings, dict) else embeddings
            tokens = None  # Cohere on Bedrock reports tokens only in a response header
        return {
            "object": "list",
            "model": self.model_name,
            "data": [
                {"object": "embedding", "index": index, "embedding": vector}
                for index, vector in enumerate(vectors)
            ],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    # ----------------------------------------------------------- streaming

    def stream_decoder(self) -> _aws.EventStreamDecoder:  # type: ignore[override]
        return _aws.EventStreamDecoder(self.name)

    def parse_stream_event(
        self, route_type: RouteType, event: StreamEvent, state: dict[str, Any]
    ) -> list[dict[str, Any]]:
        kind = event.event or ""
        data = event_json(event, self.name)
        if kind.endswith("Exception") or kind == "error":
            raise UpstreamStatusError(
                provider=self.name,
                upstream_status=_ERROR_STATUS.get(kind[:1].upper() + kind[1:], 502),
                reason=f"{kind}: {reason_from_body(data, fallback=kind)}",
            )
        try:
            chunks = self._chat_event(kind, data, state)
        except (KeyError, TypeError) as exc:
            raise shape_error(self.name, exc) from exc
        return chat_chunks_to_completions(chunks) if route_type is RouteType.COMPLETIONS else chunks

    def _chat_event(self, kind: str, data: dict[str, Any], state: dict[str, Any]) -> list[dict[str, Any]]:
        """Converse's stream events as standard chat chunks. The finish reason (``messageStop``)
        is held back for the ``metadata`` event that follows it, so the last chunk carries both
        the finish reason and the usage."""
        model = self.model_name
        if kind == "messageStart":
            return [chat_chunk(model, delta={"role": data.get("role", "assistant"), "content": ""})]
        if kind == "contentBlockStart":
            tool = data["start"].get("toolUse")
            if not tool:
                return []
            tools: dict[int, int] = state.setdefault("tools", {})
            position = tools[data["contentBlockIndex"]] = len(tools)
            call = {
                "index": position,
                "id": tool["toolUseId"],
                "type": "function",
                "function": {"name": tool["name"], "arguments": ""},
            }
            return [chat_chunk(model, delta={"tool_calls": [call]})]
        if kind == "contentBlockDelta":
            delta = data["delta"]
            if "text" in delta:
                return [chat_chunk(model, delta={"content": delta["text"]})]
            if "toolUse" in delta:
                position = state.get("tools", {}).get(data["contentBlockIndex"], 0)
                arguments = {"index": position, "function": {"arguments": delta["toolUse"].get("input", "")}}
                return [chat_chunk(model, delta={"tool_calls": [arguments]})]
            return []  # reasoning, citations: not part of the standard chunk
        if kind == "messageStop":
            state["finish_reason"] = finish_reason(data.get("stopReason"))
            return []
        if kind == "metadata":
            usage = usage_from_converse(data.get("usage"))
            return [chat_chunk(model, finish_reason=state.pop("finish_reason", "stop"), usage=usage)]
        return []

    # ----------------------------------------------------------- errors

    def upstream_error(self, status: int, body: Any, headers: Any) -> tuple[int, str]:
        kind = error_type(headers.get("x-amzn-ErrorType")) if headers else None
        if kind is None and isinstance(body, dict):
            kind = error_type(body.get("__type") or body.get("code"))
        reason = reason_from_body(body, fallback=f"HTTP {status}")
        if kind is None:
            return status, reason
        return _ERROR_STATUS.get(kind, status), f"{kind}: {reason}"


def _embedding_family(model: str) -> str | None:
    lowered = model.lower()
    if "titan-embed" in lowered:
        return "titan"
    if "cohere.embed" in lowered:
        return "cohere"
    return None


def _texts(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return value
    raise InvalidRequestError(
        "Bedrock embeddings take text: a string or a list of strings, not token ids.", param="input"
    )
