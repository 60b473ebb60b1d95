"""Google Gemini (the Gemini Developer API): chat and completions through ``generateContent``,
streaming through ``streamGenerateContent?alt=sse``, embeddings through ``batchEmbedContents``;
``gemini_api_base`` defaults to ``https://generativelanguage.googleapis.com/v1beta/models`` (MLflow's
default) and the key travels in the ``x-goog-api-key`` header, never in the URL.

Translation (OpenAI shape → Gemini): ``system``/``developer`` messages → ``systemInstruction``;
``assistant`` → role ``model`` (tool calls → ``functionCall`` parts); ``tool`` messages →
``functionResponse`` parts named after the call they answer (a JSON-object result is sent as is,
anything else as ``{"output": ...}``); consecutive turns of one role are merged. Tools →
``functionDeclarations`` with ``parametersJsonSchema`` (full JSON Schema, not the OpenAPI subset);
``tool_choice`` auto/none/required/function → ``functionCallingConfig`` mode AUTO/NONE/ANY (+
``allowedFunctionNames``). ``generationConfig`` gets ``stop`` → ``stopSequences``, ``n`` →
``candidateCount``, ``max_tokens`` → ``maxOutputTokens``, ``temperature``, ``top_p`` → ``topP``,
``seed``, the penalties, and ``response_format`` json_object/json_schema → ``responseMimeType``
(+ ``responseJsonSchema``). Refused with a 400: ``logit_bias``, ``logprobs``, ``top_logprobs``,
``user``, ``parallel_tool_calls: false``. Gemini's own top-level keys (``safetySettings``...) pass.

Answers: Gemini gives function calls no ids, so the gateway names them ``call_<responseId>_<n>``;
a call's ``thoughtSignature`` is returned as ``extra_content.google.thought_signature`` on the tool
call (the shape Google's own OpenAI-compatible endpoint uses) and sent back when the call comes back
in the history. Finish reasons: STOP → stop (tool_calls when the answer calls a tool), MAX_TOKENS
→ length, safety-type reasons → content_filter. A wrong key is a 400 ``API_KEY_INVALID`` from
Gemini; the gateway treats it as the 401 it means (so it answers 502, not 400).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import orjson
from pydantic import field_validator

from gateway_server.errors import InvalidRequestError
from gateway_server.providers._chat_backed import ChatBackedAdapter
from gateway_server.providers._translate import (
    base_url,
    chat_chunks_to_completions,
    completions_to_chat,
    dump_arguments,
    event_json,
    function_tools,
    load_arguments,
    max_tokens_of,
    refuse,
    shape_error,
    stop_list,
    text_of,
    tool_choice_of,
)
from gateway_server.providers.base import ProviderConfig, UpstreamRequest, origin_of
from gateway_server.providers.streaming import StreamEvent, chat_chunk
from gateway_server.routes import RouteType
from gateway_server.secrets import Secret

__all__ = ["GeminiAdapter", "GeminiConfig"]

DEFAULT_GEMINI_API_BASE = "https://generativelanguage.googleapis.com/v1beta/models"

_REFUSED = ("logit_bias", "logprobs", "top_logprobs", "user")
_TRANSLATED = frozenset(
    {
        "messages", "max_tokens", "max_completion_tokens", "stop", "temperature", "top_p", "n", "seed",
        "presence_penalty", "frequency_penalty", "response_format", "tools", "tool_choice",
        "parallel_tool_calls", "stream", "stream_options", "model",
    }
)  # fmt: skip
_GENERATION = {  # OpenAI name → generationConfig name, for values passed unchanged
    "temperature": "temperature",
    "top_p": "topP",
    "n": "candidateCount",
    "seed": "seed",
    "presence_penalty": "presencePenalty",
    "frequency_penalty": "frequencyPenalty",
}
_EMBED_KEYS = frozenset({"input", "dimensions", "encoding_format", "taskType", "title", "model"})
_FILTERED = frozenset(
    {"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY", "LANGUAGE"}
)
_DATA_URL = re.compile(r"data:(?P<media>[\w.+-]+/[\w.+-]+);base64,(?P<data>.*)", re.DOTALL)


class GeminiConfig(ProviderConfig):
    gemini_api_key: Secret
    gemini_api_base: str = DEFAULT_GEMINI_API_BASE

    @field_validator("gemini_api_base")
    @classmethod
    def _check_base(cls, value: str) -> str:
        return base_url(value)


class GeminiAdapter(ChatBackedAdapter, provider="gemini"):
    config_model = GeminiConfig
    config: GeminiConfig

    def __init__(self, config: GeminiConfig, model_name: str | None) -> None:
        super().__init__(config, model_name)
        model = (model_name or "").removeprefix("models/")
        self.resource = f"models/{model}"
        prefix = f"{config.gemini_api_base}/{quote(model, safe='')}"
        self.origin = origin_of(config.gemini_api_base)
        self.generate_url = f"{prefix}:generateContent"
        self.stream_url = f"{prefix}:streamGenerateContent?alt=sse"
        self.embed_url = f"{prefix}:batchEmbedContents"
        self.headers = {"x-goog-api-key": config.gemini_api_key.get(), "Content-Type": "application/json"}

    # ----------------------------------------------------------- requests

    def build_chat_request(self, payload: dict[str, Any]) -> UpstreamRequest:
        return UpstreamRequest(url=self.generate_url, headers=self.headers, body=self._body(payload))

    def build_stream_request(self, route_type: RouteType, payload: dict[str, Any]) -> UpstreamRequest:
        self.check_streaming(route_type)
        if route_type is RouteType.COMPLETIONS:
            payload = completions_to_chat(payload, self.name)
        return UpstreamRequest(url=self.stream_url, headers=self.headers, body=self._body(payload))

    def build_embeddings_request(self, payload: dict[str, Any]) -> UpstreamRequest:
        refuse(payload, sorted(key for key in payload if key not in _EMBED_KEYS), self.name)
        if payload.get("encoding_format") not in (None, "float"):
            refuse(payload, ("encoding_format",), self.name)
        texts = payload["input"]
        texts = [texts] if isinstance(texts, str) else texts
        if not all(isinstance(text, str) for text in texts):
            raise InvalidRequestError(
                "Invalid value for 'input': the gemini provider embeds text; send strings, not token ids.",
                param="input",
            )
        requests = []
        for text in texts:
            request: dict[str, Any] = {"model": self.resource, "content": {"parts": [{"text": text}]}}
            for key in ("taskType", "title"):
                if payload.get(key) is not None:
                    request[key] = payload[key]
            if payload.get("dimensions") is not None:
                request["outputDimensionality"] = payload["dimensions"]
            requests.append(request)
        return UpstreamRequest(url=self.embed_url, headers=self.headers, body={"requests": requests})

    def _body(self, payload: dict[str, Any]) -> dict[str, Any]:
        refuse(payload, _REFUSED, self.name)
        if payload.get("parallel_tool_calls") is False:
            refuse(payload, ("parallel_tool_calls",), self.name)
        system, contents = _contents(payload["messages"])
        body: dict[str, Any] = {"contents": contents}
        if system:
            body["systemInstruction"] = {"parts": [{"text": system}]}
        if payload.get("tools"):
            declarations = [_declaration(function) for _, function in function_tools(payload["tools"])]
            body["tools"] = [{"functionDeclarations": declarations}]
        choice = tool_choice_of(payload.get("tool_choice"))
        if choice is not None:
            mode: dict[str, Any] = {"mode": {"auto": "AUTO", "none": "NONE"}.get(choice[0], "ANY")}
            if choice[1] is not None:
                mode["allowedFunctionNames"] = [choice[1]]
            body["toolConfig"] = {"functionCallingConfig": mode}
        generation = _generation_config(payload)
        for key, value in payload.items():
            if key in _TRANSLATED or value is None:
                continue
            if key == "generationConfig" and isinstance(value, dict):
                generation = {**value, **generation}
                continue
            if key in body:
                raise InvalidRequestError(
                    f"'{key}' is set by the gateway from the OpenAI-shaped request; remove it.", param=key
                )
            body[key] = value
        if generation:
            body["generationConfig"] = generation
        return body

    # ----------------------------------------------------------- responses

    def parse_chat_response(self, body: dict[str, Any]) -> dict[str, Any]:
        prefix = f"call_{body['responseId']}_" if body.get("responseId") else "call_"
        candidates = body.get("candidates")
        if not candidates:
            if not (body.get("promptFeedback") or {}).get("blockReason"):
                raise ValueError("the answer has neither candidates nor a promptFeedback.blockReason")
            blocked = {"role": "assistant", "content": None}
            choices = [{"index": 0, "message": blocked, "finish_reason": "content_filter"}]
        else:
            choices = []
            for position, candidate in enumerate(candidates):
                texts, calls = _parts(candidate, f"{prefix}{position}_" if len(candidates) > 1 else prefix, 0)
                message: dict[str, Any] = {
                    "role": "assistant",
                    "content": texts if texts or not calls else None,
                }
                if calls:
                    message["tool_calls"] = calls
                finish = _finish(candidate.get("finishReason"), bool(calls))
                index = candidate.get("index", position)
                choices.append({"index": index, "message": message, "finish_reason": finish})
        result: dict[str, Any] = {
            "object": "chat.completion",
            "model": body.get("modelVersion") or self.model_name,
            "choices": choices,
            "usage": _usage(body.get("usageMetadata")),
        }
        if body.get("responseId"):
            result["id"] = body["responseId"]
        return result

    def parse_embeddings_response(self, body: dict[str, Any]) -> dict[str, Any]:
        tokens = (body.get("usageMetadata") or {}).get("promptTokenCount")
        return {
            "object": "list",
            "data": [
                {"object": "embedding", "index": index, "embedding": item["values"]}
                for index, item in enumerate(body["embeddings"])
            ],
            "model": self.model_name,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    # ----------------------------------------------------------- streaming

    def parse_stream_event(
        self, route_type: RouteType, event: StreamEvent, state: dict[str, Any]
    ) -> list[dict[str, Any]]:
        data = event_json(event, self.name)
        try:
            chunks = self._stream_chunks(data, state)
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            raise shape_error(self.name, exc) from exc
        return chunks if route_type is RouteType.CHAT else chat_chunks_to_completions(chunks)

    def _stream_chunks(self, data: dict[str, Any], state: dict[str, Any]) -> list[dict[str, Any]]:
        state.setdefault("id", data.get("responseId"))
        model = data.get("modelVersion") or self.model_name
        candidates = data.get("candidates") or []
        if not candidates and (data.get("promptFeedback") or {}).get("blockReason"):
            candidates = [{"index": 0, "finishReason": "SAFETY"}]
        chunks = []
        for position, candidate in enumerate(candidates):
            index = candidate.get("index", position)
            calls_so_far = state.setdefault("calls", {}).get(index, 0)
            prefix = f"call_{state['id']}_" if state["id"] else "call_"
            texts, calls = _parts(candidate, f"{prefix}{index}_" if index else prefix, calls_so_far)
            state["calls"][index] = calls_so_far + len(calls)
            delta: dict[str, Any] = {}
            if index not in state.setdefault("roles", set()):
                state["roles"].add(index)
                delta["role"] = "assistant"
            if texts:
                delta["content"] = texts
            if calls:
                delta["tool_calls"] = [{"index": calls_so_far + n, **call} for n, call in enumerate(calls)]
            reason = candidate.get("finishReason")
            finish = _finish(reason, state["calls"][index] > 0) if reason else None
            if delta or finish:
                chunks.append(chat_chunk(model, index=index, delta=delta, finish_reason=finish))
        if chunks and any(chunk["choices"][0]["finish_reason"] for chunk in chunks):
            chunks[-1]["usage"] = _usage(data.get("usageMetadata"))
        if state["id"]:
            for chunk in chunks:
                chunk["id"] = state["id"]
        return chunks

    # ----------------------------------------------------------- errors

    def map_error_status(self, status: int, body: Any) -> int:
        if status == 400 and "API_KEY_INVALID" in _reasons(body):
            return 401
        return status


# ---------------------------------------------------------------- helpers (pure)


def _contents(messages: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    system: list[str] = []
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool call id → function name, for the tool messages that answer it
    for index, message in enumerate(messages):
        field = f"messages[{index}]"
        role = message["role"]
        content = message.get("content")
        if role in ("system", "developer"):
            system.append(text_of(content, f"{field}.content"))
            continue
        if role == "user":
            parts = _user_parts(content, f"{field}.content")
        elif role == "assistant":
            role, parts = "model", _model_parts(message, field, names)
        elif role == "tool":
            call_id = message.get("tool_call_id")
            if call_id not in names:
                raise InvalidRequestError(
                    f"Invalid value for '{field}.tool_call_id': no earlier assistant message has a tool call "
                    f"with id {call_id!r} (Gemini needs the function's name, taken from that call).",
                    param=f"{field}.tool_call_id",
                )
            response = _tool_response(text_of(content, f"{field}.content"))
            role, parts = "user", [{"functionResponse": {"name": names[call_id], "response": response}}]
        else:
            raise InvalidRequestError(
                f"Invalid value for '{field}.role': the gemini provider accepts system, developer, user, "
                f"assistant and tool messages, not '{role}'.",
                param=f"{field}.role",
            )
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
    return "\n".join(system), contents


def _user_parts(content: Any, field: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"text": content}]
    parts: list[dict[str, Any]] = []
    for index, part in enumerate(content or ()):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            parts.append({"text": text_of([part], field)})
        elif kind == "image_url":
            url = part.get("image_url")
            url = url.get("url") if isinstance(url, dict) else url
            match = _DATA_URL.fullmatch(url or "")
            if match:
                parts.append({"inlineData": {"mimeType": match["media"], "data": match["data"]}})
            else:
                parts.append({"fileData": {"fileUri": url}})
        else:
            raise InvalidRequestError(
                f"Invalid value for '{field}[{index}]': the gemini provider accepts text and image_url parts.",
                param=f"{field}[{index}]",
            )
    return parts


def _model_parts(message: dict[str, Any], field: str, names: dict[str, str]) -> list[dict[str, Any]]:
    text = text_of(message.get("content"), f"{field}.content")
    parts: list[dict[str, Any]] = [{"text": text}] if text else []
    for index, call in enumerate(message.get("tool_calls") or ()):
        function = call.get("function") or {}
        names[str(call.get("id"))] = str(function.get("name"))
        arguments = load_arguments(
            function.get("arguments"), f"{field}.tool_calls[{index}].function.arguments"
        )
        part: dict[str, Any] = {"functionCall": {"name": function.get("name"), "args": arguments}}
        signature = ((call.get("extra_content") or {}).get("google") or {}).get("thought_signature")
        if signature:
            part["thoughtSignature"] = signature
        parts.append(part)
    return parts or [{"text": ""}]


def _tool_response(text: str) -> dict[str, Any]:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        value = text
    return value if isinstance(value, dict) else {"output": value}


def _declaration(function: dict[str, Any]) -> dict[str, Any]:
    declaration = {"name": function["name"]}
    if function.get("description"):
        declaration["description"] = function["description"]
    if function.get("parameters"):
        declaration["parametersJsonSchema"] = function["parameters"]
    return declaration


def _generation_config(payload: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    if payload.get("stop") is not None:
        config["stopSequences"] = stop_list(payload["stop"])
    if max_tokens_of(payload) is not None:
        config["maxOutputTokens"] = max_tokens_of(payload)
    for name, gemini_name in _GENERATION.items():
        if payload.get(name) is not None:
            config[gemini_name] = payload[name]
    response_format = payload.get("response_format")
    kind = response_format.get("type") if isinstance(response_format, dict) else response_format
    if kind in ("json_object", "json_schema"):
        config["responseMimeType"] = "application/json"
        spec = response_format.get("json_schema") if isinstance(response_format, dict) else None
        schema = (spec or {}).get("schema")
        if kind == "json_schema" and schema:
            config["responseJsonSchema"] = schema
    elif kind not in (None, "text"):
        raise InvalidRequestError(
            "Invalid value for 'response_format': expected type text, json_object or json_schema.",
            param="response_format",
        )
    return config


def _parts(candidate: dict[str, Any], id_prefix: str, first: int) -> tuple[str, list[dict[str, Any]]]:
    """The text of a candidate (thoughts left out) and its function calls as OpenAI tool calls."""
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for part in (candidate.get("content") or {}).get("parts") or ():
        if "text" in part and not part.get("thought"):
            texts.append(part["text"])
        elif "functionCall" in part:
            function = part["functionCall"]
            call: dict[str, Any] = {
                "id": function.get("id") or f"{id_prefix}{first + len(calls)}",
                "type": "function",
                "function": {"name": function["name"], "arguments": dump_arguments(function.get("args"))},
            }
            if part.get("thoughtSignature"):
                call["extra_content"] = {"google": {"thought_signature": part["thoughtSignature"]}}
            calls.append(call)
    return "".join(texts), calls


def _finish(reason: str | None, called: bool) -> str:
    if reason == "MAX_TOKENS":
        return "length"
    if reason in _FILTERED:
        return "content_filter"
    return "tool_calls" if called else "stop"


def _usage(metadata: dict[str, Any] | None) -> dict[str, Any]:
    metadata = metadata or {}
    prompt = (metadata.get("promptTokenCount") or 0) + (metadata.get("toolUsePromptTokenCount") or 0)
    completion = (metadata.get("candidatesTokenCount") or 0) + (metadata.get("thoughtsTokenCount") or 0)
    total = metadata.get("totalTokenCount")
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": total if total is not None else prompt + completion,
    }


def _reasons(body: Any) -> set[str]:
    error = body.get("error") if isinstance(body, dict) else None
    details = error.get("details") if isinstance(error, dict) else None
    return {str(item["reason"]) for item in details or () if isinstance(item, dict) and item.get("reason")}
