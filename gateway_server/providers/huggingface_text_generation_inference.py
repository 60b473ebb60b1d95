"""Hugging Face Text Generation Inference (TGI): completions via ``/generate``, chat via its Messages API.

- completions: ``POST {hf_server_url}/generate`` with ``{"inputs": prompt, "parameters": {...}}``
  (``details`` and ``decoder_input_details`` on, for the finish reason and token counts), as
  MLflow's provider does; streamed through ``/generate_stream`` (SSE, one token per event, the last
  event carrying ``details``).
- chat: ``POST {hf_server_url}/v1/chat/completions``, TGI's OpenAI-compatible Messages API (TGI
  1.4+), so the OpenAI adapter's transforms apply, tools and streaming included. MLflow's TGI
  provider offers completions only; chat needs a model with a chat template, which TGI requires.

Differences from MLflow's provider: ``temperature`` is passed as given (MLflow multiplies it by 50);
``temperature: 0`` means greedy decoding (TGI refuses 0, so the parameter is left out and sampling
is off), and ``top_p: 1`` is left out (TGI refuses 1, and it means "no nucleus cut" anyway).
"""

from __future__ import annotations

from typing import Any

from pydantic import field_validator

from gateway_server.errors import InvalidRequestError, UpstreamStatusError
from gateway_server.providers._translate import base_url, dump_arguments, event_json, refuse, stop_list, usage
from gateway_server.providers.base import ProviderConfig, UpstreamRequest, reason_from_body
from gateway_server.providers.openai import OpenAIWire, OpenAIWireAdapter
from gateway_server.providers.streaming import SSEDecoder, StreamEvent, completions_chunk
from gateway_server.routes import RouteType

__all__ = ["HuggingFaceTextGenerationInferenceConfig", "TGIAdapter", "TGIConfig"]

_FINISH = {"length": "length", "eos_token": "stop", "stop_sequence": "stop"}
# TGI's status for "Request failed during generation" (the model failed, not the request).
_GENERATION_ERROR = 424
_ERROR_STATUS = {"validation": 422, "generation": 500, "overloaded": 429, "incomplete_generation": 500}
_UNSUPPORTED = ("n", "logprobs", "echo", "suffix", "best_of", "tools")


class HuggingFaceTextGenerationInferenceConfig(ProviderConfig):
    """MLflow's class name, so ``gateway_server.config.HuggingFaceTextGenerationInferenceConfig`` works."""

    hf_server_url: str

    @field_validator("hf_server_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        return base_url(value)


TGIConfig = HuggingFaceTextGenerationInferenceConfig


class TGIAdapter(OpenAIWireAdapter, provider="huggingface_text_generation_inference"):
    config_model = TGIConfig
    config: TGIConfig

    def __init__(self, config: TGIConfig, model_name: str | None) -> None:
        super().__init__(config, model_name)
        server = config.hf_server_url
        self.generate_url = f"{server}/generate"
        self.generate_stream_url = f"{server}/generate_stream"

    def openai_wire(self) -> OpenAIWire:
        return OpenAIWire.at(f"{self.config.hf_server_url}/v1", {})  # chat: the Messages API

    # ----------------------------------------------------------- completions: /generate

    def _generate(self, url: str, payload: dict[str, Any], *, stream: bool) -> UpstreamRequest:
        if payload.get("n") not in (None, 1):
            raise InvalidRequestError(
                "Text Generation Inference returns one completion per request; 'n' must be 1.", param="n"
            )
        refuse(payload, _UNSUPPORTED, self.display_name)
        prompt = payload["prompt"]
        if isinstance(prompt, list):
            if len(prompt) != 1:
                raise InvalidRequestError(
                    f"Text Generation Inference completes one prompt per request; 'prompt' has {len(prompt)}.",
                    param="prompt",
                )
            prompt = prompt[0]
        parameters: dict[str, Any] = {"details": True}
        if not stream:
            parameters["decoder_input_details"] = True  # the prompt's tokens: TGI refuses it when streaming
        max_tokens = payload.get("max_tokens")
        if max_tokens is not None:
            parameters["max_new_tokens"] = max_tokens
        temperature = payload.get("temperature")
        if temperature is not None:
            if temperature > 0:
                parameters["temperature"] = temperature
            parameters["do_sample"] = temperature > 0
        top_p = payload.get("top_p")
        if top_p is not None and top_p < 1:
            parameters["top_p"] = top_p
        for name in ("seed", "top_k", "repetition_penalty", "frequency_penalty"):
            if payload.get(name) is not None:
                parameters[name] = payload[name]
        stop = stop_list(payload.get("stop"))
        if stop:
            parameters["stop"] = stop
        return UpstreamRequest(
            url=url, headers=self.wire.headers, body={"inputs": prompt, "parameters": parameters}
        )

    def build_completions_request(self, payload: dict[str, Any]) -> UpstreamRequest:
        return self._generate(self.generate_url, payload, stream=False)

    def build_stream_request(self, route_type: RouteType, payload: dict[str, Any]) -> UpstreamRequest:
        if route_type is RouteType.COMPLETIONS:
            return self._generate(self.generate_stream_url, payload, stream=True)
        return super().build_stream_request(route_type, payload)

    def parse_completions_response(self, body: dict[str, Any]) -> dict[str, Any]:
        details = body.get("details") or {}
        prompt_tokens = len(details["prefill"]) if "prefill" in details else None
        return {
            "object": "text_completion",
            "model": self.model_name,
            "choices": [
                {
                    "index": 0,
                    "text": body["generated_text"],
                    "finish_reason": _FINISH.get(details.get("finish_reason", ""), "stop"),
                }
            ],
            "usage": usage(prompt_tokens, details.get("generated_tokens")),
        }

    # ----------------------------------------------------------- chat: the Messages API

    def parse_chat_response(self, body: dict[str, Any]) -> dict[str, Any]:
        result = super().parse_chat_response(body)
        for choice in result["choices"]:  # TGI's schema lets arguments be a JSON object
            for call in choice["message"].get("tool_calls") or ():
                call["function"] = {
                    **call["function"],
                    "arguments": dump_arguments(call["function"].get("arguments")),
                }
        return result

    # ----------------------------------------------------------- streaming

    def stream_decoder(self) -> SSEDecoder:
        # Plain SSE: the native /generate_stream never sends OpenAI's [DONE], and the chat stream
        # (OpenAI's shape) ends with one, which releases any chunk held for the usage.
        return SSEDecoder()

    def parse_stream_event(
        self, route_type: RouteType, event: StreamEvent, state: dict[str, Any]
    ) -> list[dict[str, Any]]:
        if route_type is RouteType.CHAT:
            return super().parse_stream_event(route_type, event, state)
        data = event_json(event, self.name)
        if "error" in data:
            raise UpstreamStatusError(
                provider=self.name,
                upstream_status=_ERROR_STATUS.get(str(data.get("error_type")), 500),
                reason=reason_from_body(data, "error event in the stream"),
            )
        token = data.get("token") or {}
        text = "" if token.get("special") else token.get("text", "")
        details = data.get("details")
        if not details:
            return [completions_chunk(self.model_name, text=text)] if text else []
        return [
            completions_chunk(
                self.model_name,
                text=text,
                finish_reason=_FINISH.get(details.get("finish_reason", ""), "stop"),
                usage=usage(details.get("input_length"), details.get("generated_tokens")),
            )
        ]

    # ----------------------------------------------------------- errors

    def map_error_status(self, status: int, body: Any) -> int:
        return 500 if status == _GENERATION_ERROR else status
