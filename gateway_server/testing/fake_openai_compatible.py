"""Fake OpenAI-compatible servers (vLLM, Ollama, llama.cpp, Groq, ...): FakeOpenAI under another prefix.

These servers answer OpenAI's paths with OpenAI's shapes, so the fake is :class:`FakeOpenAI` served
under the preset's path prefix (``/v1``, ``/openai/v1`` for Groq, ``/api/v1`` for OpenRouter), with
the key check optional (local servers often run without one) and the error envelope of the server
family: OpenAI's ``{"error": {...}}`` (Ollama, llama.cpp, the hosted services) or vLLM's top-level
``{"object": "error", "message", "type", "param", "code"}``.

    with FakeOpenAICompatible(prefix="/openai/v1", api_key="gsk-test").serve() as fake:
        ...  # api_base = fake.api_base
"""

from __future__ import annotations

from typing import Any, Literal

from gateway_server.testing.fake_openai import FakeOpenAI

__all__ = ["FakeOpenAICompatible"]

_VLLM_TYPES = {400: "BadRequestError", 401: "Unauthorized", 404: "NotFoundError", 429: "TooManyRequests"}


class FakeOpenAICompatible(FakeOpenAI):
    name = "openai-compatible"

    def __init__(
        self,
        *,
        prefix: str = "/v1",
        api_key: str | None = None,
        errors: Literal["openai", "vllm"] = "openai",
        **options: Any,
    ) -> None:
        self.errors = errors
        super().__init__(prefix=prefix, api_key=api_key, **options)

    def error_body(self, status: int, message: str) -> Any:
        if self.errors == "vllm":
            kind = _VLLM_TYPES.get(status, "InternalServerError" if status >= 500 else "BadRequestError")
            return {"object": "error", "message": message, "type": kind, "param": None, "code": status}
        return super().error_body(status, message)
