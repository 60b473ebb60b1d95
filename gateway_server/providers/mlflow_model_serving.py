"""MLflow model serving (``mlflow models serve``): ``POST {model_server_url}/invocations``.

The request shapes are MLflow's provider's, so models served for MLflow's gateway work unchanged:
``{"inputs": [...], "params": {...}}`` where ``inputs`` holds the prompts (completions), the texts
(embeddings) or the content of the one chat message, and ``params`` every other parameter the caller
set. The answer is read from ``predictions``: a list of strings (or a one-key mapping, or a mapping
with ``choices``) for chat and completions, a list of vectors (or one flat vector) for embeddings.
A served model reports no token counts and no finish reason, so those are null.
"""

from __future__ import annotations

from typing import Any

from pydantic import field_validator

from gateway_server.errors import InvalidRequestError, UpstreamProtocolError
from gateway_server.providers._translate import base_url, text_of, usage
from gateway_server.providers.base import Adapter, ProviderConfig, UpstreamRequest, origin_of
from gateway_server.routes import RouteType

__all__ = ["MlflowModelServingAdapter", "MlflowModelServingConfig"]

_HEADERS = {"Content-Type": "application/json"}
_INPUT_KEY = {RouteType.CHAT: "messages", RouteType.COMPLETIONS: "prompt", RouteType.EMBEDDINGS: "input"}


class MlflowModelServingConfig(ProviderConfig):
    model_server_url: str

    @field_validator("model_server_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        return base_url(value)


class MlflowModelServingAdapter(Adapter, provider="mlflow_model_serving"):
    config_model = MlflowModelServingConfig
    config: MlflowModelServingConfig

    def __init__(self, config: MlflowModelServingConfig, model_name: str | None) -> None:
        super().__init__(config, model_name)
        self.url = f"{config.model_server_url}/invocations"
        self.origin = origin_of(config.model_server_url)

    def _request(self, route_type: RouteType, inputs: list[Any], payload: dict[str, Any]) -> UpstreamRequest:
        key = _INPUT_KEY[route_type]
        params = {
            name: value
            for name, value in payload.items()
            if name not in (key, "stream") and value is not None
        }
        body: dict[str, Any] = {"inputs": inputs}
        if params:
            body["params"] = params
        return UpstreamRequest(url=self.url, headers=_HEADERS, body=body)

    def build_chat_request(self, payload: dict[str, Any]) -> UpstreamRequest:
        messages = payload["messages"]
        if len(messages) != 1:
            raise InvalidRequestError(
                "MLflow model serving takes one message per chat request (the served model sees its "
                f"content only); this request has {len(messages)}.",
                param="messages",
            )
        return self._request(
            RouteType.CHAT, [text_of(messages[0].get("content"), "messages[0].content")], payload
        )

    def build_completions_request(self, payload: dict[str, Any]) -> UpstreamRequest:
        prompt = payload["prompt"]
        return self._request(RouteType.COMPLETIONS, prompt if isinstance(prompt, list) else [prompt], payload)

    def build_embeddings_request(self, payload: dict[str, Any]) -> UpstreamRequest:
        texts = payload["input"]
        return self._request(RouteType.EMBEDDINGS, texts if isinstance(texts, list) else [texts], payload)

    def parse_chat_response(self, body: dict[str, Any]) -> dict[str, Any]:
        choices = [
            {"index": index, "message": {"role": "assistant", "content": text}, "finish_reason": None}
            for index, text in enumerate(_texts(body, self.name))
        ]
        return {
            "object": "chat.completion",
            "model": self.model_name,
            "choices": choices,
            "usage": usage(None, None),
        }

    def parse_completions_response(self, body: dict[str, Any]) -> dict[str, Any]:
        choices = [
            {"index": index, "text": text, "finish_reason": None}
            for index, text in enumerate(_texts(body, self.name))
        ]
        return {
            "object": "text_completion",
            "model": self.model_name,
            "choices": choices,
            "usage": usage(None, None),
        }

    def parse_embeddings_response(self, body: dict[str, Any]) -> dict[str, Any]:
        predictions = _predictions(body, self.name)
        if predictions and all(_is_number(value) for value in predictions):
            predictions = [predictions]  # one flat vector
        if not all(
            isinstance(vector, list) and vector and all(map(_is_number, vector)) for vector in predictions
        ):
            raise UpstreamProtocolError(
                f"{self.name} returned predictions that are not a list of non-empty number lists",
                provider=self.name,
            )
        return {
            "object": "list",
            "model": self.model_name,
            "data": [
                {"object": "embedding", "index": index, "embedding": vector}
                for index, vector in enumerate(predictions)
            ],
            "usage": {"prompt_tokens": None, "total_tokens": None},
        }


def _predictions(body: dict[str, Any], provider: str) -> Any:
    if "predictions" not in body:
        raise UpstreamProtocolError(f"{provider} returned no 'predictions' key", provider=provider)
    predictions = body["predictions"]
    if isinstance(predictions, dict):
        if "choices" in predictions:
            predictions = predictions["choices"]
        elif len(predictions) == 1:
            predictions = next(iter(predictions.values()))
        else:
            raise UpstreamProtocolError(
                f"{provider} returned 'predictions' as a mapping with several keys and no 'choices'; "
                "the served model must return a list, a one-key mapping, or a mapping with 'choices'",
                provider=provider,
            )
    if not isinstance(predictions, list) or not predictions:
        raise UpstreamProtocolError(f"{provider} returned empty or non-list 'predictions'", provider=provider)
    return predictions


def _texts(body: dict[str, Any], provider: str) -> list[str]:
    predictions = _predictions(body, provider)
    if not all(isinstance(text, str) for text in predictions):
        raise UpstreamProtocolError(
            f"{provider} returned predictions that are not all strings", provider=provider
        )
    return predictions


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
