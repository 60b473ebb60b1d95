"""The base of providers whose completions go through their chat API (Anthropic, Cohere, Mistral,
Gemini): the prompt becomes the one user message, and the chat answer becomes a completion."""

from __future__ import annotations

from typing import Any

from gateway_server.providers._translate import chat_to_completions, completions_to_chat
from gateway_server.providers.base import Adapter, UpstreamRequest

__all__ = ["ChatBackedAdapter"]


class ChatBackedAdapter(Adapter):
    def build_completions_request(self, payload: dict[str, Any]) -> UpstreamRequest:
        return self.build_chat_request(completions_to_chat(payload, self.name))

    def parse_completions_response(self, body: dict[str, Any]) -> dict[str, Any]:
        return chat_to_completions(self.parse_chat_response(body))
