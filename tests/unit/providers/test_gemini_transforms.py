"""Gemini: the exact generateContent / batchEmbedContents requests, answers and stream chunks (pure)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from pydantic import ValidationError

from gateway_server.config import load_config
from gateway_server.errors import InvalidRequestError
from gateway_server.providers import get_adapter_class
from gateway_server.providers.gemini import GeminiAdapter, GeminiConfig
from gateway_server.providers.streaming import StreamEvent
from gateway_server.routes import RouteType

SAMPLE = Path(__file__).parents[3] / "sample-configs" / "gemini.yaml"
BASE = "https://generativelanguage.googleapis.com/v1beta/models"
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "additionalProperties": False}
TOOL = {
    "type": "function",
    "function": {"name": "get_weather", "description": "Weather", "parameters": SCHEMA},
}


def _adapter(**config: str) -> GeminiAdapter:
    return GeminiAdapter(
        GeminiConfig.model_validate({"gemini_api_key": "AIza-test", **config}), "gemini-2.5-flash"
    )


def _events(route_type: RouteType, events: list[dict]) -> list[dict]:
    adapter, state, chunks = _adapter(), {}, []
    for data in events:
        chunks += adapter.parse_stream_event(route_type, StreamEvent(orjson.dumps(data).decode()), state)
    return chunks


def test_gemini_build_chat_request_translates_the_whole_conversation() -> None:
    call = {
        "id": "call_r1_0",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
        "extra_content": {"google": {"thought_signature": "c2ln"}},
    }
    payload = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather in Rome?"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_r1_0", "content": '{"temp": 21}'},
            {"role": "tool", "tool_call_id": "call_r1_0", "content": "sunny"},
            {"role": "user", "content": [{"type": "text", "text": "Thanks"}]},
        ],
        "temperature": 1.2,
        "top_p": 0.8,
        "max_tokens": 100,
        "stop": "END",
        "n": 2,
        "seed": 4,
        "presence_penalty": 0.1,
        "frequency_penalty": 0.2,
        "response_format": {"type": "json_schema", "json_schema": {"name": "w", "schema": SCHEMA}},
        "tools": [TOOL],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
        "generationConfig": {"topK": 5},
    }
    request = _adapter().build_chat_request(payload)
    assert request.url == f"{BASE}/gemini-2.5-flash:generateContent"
    assert dict(request.headers) == {"x-goog-api-key": "AIza-test", "Content-Type": "application/json"}
    assert "AIza-test" not in request.url
    assert request.body == {
        "contents": [
            {"role": "user", "parts": [{"text": "Weather in Rome?"}]},
            {
                "role": "model",
                "parts": [
                    {
                        "functionCall": {"name": "get_weather", "args": {"city": "Rome"}},
                        "thoughtSignature": "c2ln",
                    }
                ],
            },
            {
                "role": "user",
                "parts": [
                    {"functionResponse": {"name": "get_weather", "response": {"temp": 21}}},
                    {"functionResponse": {"name": "get_weather", "response": {"output": "sunny"}}},
                    {"text": "Thanks"},
                ],
            },
        ],
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "tools": [
            {
                "functionDeclarations": [
                    {"name": "get_weather", "description": "Weather", "parametersJsonSchema": SCHEMA}
                ]
            }
        ],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}},
        "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
        "generationConfig": {
            "topK": 5,
            "stopSequences": ["END"],
            "maxOutputTokens": 100,
            "temperature": 1.2,
            "topP": 0.8,
            "candidateCount": 2,
            "seed": 4,
            "presencePenalty": 0.1,
            "frequencyPenalty": 0.2,
            "responseMimeType": "application/json",
            "responseJsonSchema": SCHEMA,
        },
    }


@pytest.mark.parametrize(
    ("choice", "mode"),
    [("auto", {"mode": "AUTO"}), ("none", {"mode": "NONE"}), ("required", {"mode": "ANY"})],
)
def test_gemini_tool_choice_maps_to_function_calling_mode(choice: str, mode: dict) -> None:
    payload = {"messages": [{"role": "user", "content": "x"}], "tools": [TOOL], "tool_choice": choice}
    assert _adapter().build_chat_request(payload).body["toolConfig"] == {"functionCallingConfig": mode}


def test_gemini_images_and_refused_parameters() -> None:
    content = [
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
    ]
    body = _adapter().build_chat_request({"messages": [{"role": "user", "content": content}]}).body
    assert body["contents"] == [
        {
            "role": "user",
            "parts": [
                {"inlineData": {"mimeType": "image/jpeg", "data": "/9j/4AAQ"}},
                {"fileData": {"fileUri": "https://example.com/a.png"}},
            ],
        }
    ]
    for extra, param in (
        ({"logit_bias": {}}, "logit_bias"),
        ({"user": "u"}, "user"),
        ({"parallel_tool_calls": False}, "parallel_tool_calls"),
    ):
        with pytest.raises(InvalidRequestError) as info:
            _adapter().build_chat_request({"messages": [{"role": "user", "content": "x"}], **extra})
        assert info.value.param == param
    with pytest.raises(InvalidRequestError, match="no earlier assistant message"):
        _adapter().build_chat_request(
            {"messages": [{"role": "tool", "tool_call_id": "nope", "content": "x"}]}
        )


def test_gemini_stream_and_completions_requests() -> None:
    adapter = _adapter(gemini_api_base="http://127.0.0.1:5/v1beta/models/")
    request = adapter.build_stream_request(
        RouteType.COMPLETIONS, {"prompt": "Hi", "stream": True, "max_tokens": 3}
    )
    assert request.url == "http://127.0.0.1:5/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    assert request.body == {
        "contents": [{"role": "user", "parts": [{"text": "Hi"}]}],
        "generationConfig": {"maxOutputTokens": 3},
    }


def test_gemini_embeddings_request_and_response() -> None:
    adapter = GeminiAdapter(
        GeminiConfig.model_validate({"gemini_api_key": "k"}), "models/gemini-embedding-001"
    )
    request = adapter.build_embeddings_request(
        {"input": ["a", "b"], "dimensions": 768, "taskType": "RETRIEVAL_QUERY"}
    )
    assert request.url == f"{BASE}/gemini-embedding-001:batchEmbedContents"
    assert request.body == {
        "requests": [
            {
                "model": "models/gemini-embedding-001",
                "content": {"parts": [{"text": text}]},
                "taskType": "RETRIEVAL_QUERY",
                "outputDimensionality": 768,
            }
            for text in ("a", "b")
        ]
    }
    with pytest.raises(InvalidRequestError, match="'user'"):
        adapter.build_embeddings_request({"input": "a", "user": "u"})
    body = {"embeddings": [{"values": [0.1, 0.2]}, {"values": [0.3, 0.4]}]}
    assert adapter.parse_response(RouteType.EMBEDDINGS, body) == {
        "object": "list",
        "data": [
            {"object": "embedding", "index": 0, "embedding": [0.1, 0.2]},
            {"object": "embedding", "index": 1, "embedding": [0.3, 0.4]},
        ],
        "model": "models/gemini-embedding-001",
        "usage": {"prompt_tokens": None, "total_tokens": None},
    }


def test_gemini_parse_chat_response_with_thoughts_calls_and_usage() -> None:
    body = {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [
                        {"text": "thinking...", "thought": True},
                        {"text": "Checking."},
                        {
                            "functionCall": {"name": "get_weather", "args": {"city": "Rome"}},
                            "thoughtSignature": "c2ln",
                        },
                    ],
                },
                "finishReason": "STOP",
                "index": 0,
            }
        ],
        "usageMetadata": {
            "promptTokenCount": 10,
            "candidatesTokenCount": 5,
            "thoughtsTokenCount": 7,
            "totalTokenCount": 22,
        },
        "modelVersion": "gemini-2.5-flash",
        "responseId": "r1",
    }
    assert _adapter().parse_response(RouteType.CHAT, body) == {
        "id": "r1",
        "object": "chat.completion",
        "model": "gemini-2.5-flash",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Checking.",
                    "tool_calls": [
                        {
                            "id": "call_r1_0",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
                            "extra_content": {"google": {"thought_signature": "c2ln"}},
                        }
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 12, "total_tokens": 22},
    }


@pytest.mark.parametrize(
    ("reason", "finish"),
    [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("OTHER", "stop"),
    ],
)
def test_gemini_parse_chat_maps_finish_reason(reason: str, finish: str) -> None:
    body = {"candidates": [{"content": {"parts": [{"text": "x"}]}, "finishReason": reason}]}
    assert _adapter().parse_chat_response(body)["choices"][0]["finish_reason"] == finish


def test_gemini_blocked_prompt_is_a_content_filter_answer() -> None:
    body = {
        "promptFeedback": {"blockReason": "SAFETY"},
        "usageMetadata": {"promptTokenCount": 3, "totalTokenCount": 3},
    }
    result = _adapter().parse_chat_response(body)
    assert result["choices"] == [
        {"index": 0, "message": {"role": "assistant", "content": None}, "finish_reason": "content_filter"}
    ]
    assert result["usage"] == {"prompt_tokens": 3, "completion_tokens": 0, "total_tokens": 3}


def test_gemini_stream_events_become_standard_chunks() -> None:
    head = {"modelVersion": "gemini-2.5-flash", "responseId": "s1"}
    events = [
        {"candidates": [{"content": {"role": "model", "parts": [{"text": "Hel"}]}, "index": 0}], "usageMetadata": {"promptTokenCount": 4}, **head},
        {"candidates": [{"content": {"role": "model", "parts": [{"text": "lo"}]}, "index": 0}], **head},
        {"candidates": [{"content": {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {}}}]}, "index": 0}], **head},
        {"candidates": [{"content": {"role": "model", "parts": [{"functionCall": {"name": "g", "args": {"a": 1}}}]}, "finishReason": "STOP", "index": 0}],
         "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 6, "totalTokenCount": 10}, **head},
    ]  # fmt: skip

    def chunk(delta: dict, finish: str | None = None, **extra: dict) -> dict:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return {
            "object": "chat.completion.chunk",
            "model": "gemini-2.5-flash",
            "choices": [choice],
            **extra,
            "id": "s1",
        }

    assert _events(RouteType.CHAT, events) == [
        chunk({"role": "assistant", "content": "Hel"}),
        chunk({"content": "lo"}),
        chunk({"tool_calls": [{"index": 0, "id": "call_s1_0", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}),
        chunk(
            {"tool_calls": [{"index": 1, "id": "call_s1_1", "type": "function", "function": {"name": "g", "arguments": '{"a":1}'}}]},
            "tool_calls",
            usage={"prompt_tokens": 4, "completion_tokens": 6, "total_tokens": 10},
        ),
    ]  # fmt: skip


def test_gemini_stream_for_completions() -> None:
    events = [
        {"candidates": [{"content": {"parts": [{"text": "a "}]}, "index": 0}], "responseId": "s"},
        {"candidates": [{"content": {"parts": [{"text": "b"}]}, "finishReason": "MAX_TOKENS", "index": 0}], "responseId": "s",
         "usageMetadata": {"promptTokenCount": 1, "candidatesTokenCount": 2, "totalTokenCount": 3}},
    ]  # fmt: skip
    assert _events(RouteType.COMPLETIONS, events) == [
        {"object": "text_completion", "model": "gemini-2.5-flash", "choices": [{"index": 0, "text": "a ", "finish_reason": None}], "id": "s"},
        {"object": "text_completion", "model": "gemini-2.5-flash", "choices": [{"index": 0, "text": "b", "finish_reason": "length"}], "id": "s",
         "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}},
    ]  # fmt: skip


def test_gemini_invalid_key_400_counts_as_401() -> None:
    adapter = _adapter()
    bad_key = {
        "error": {
            "code": 400,
            "message": "API key not valid. Please pass a valid API key.",
            "status": "INVALID_ARGUMENT",
            "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}],
        }
    }
    assert adapter.map_error_status(400, bad_key) == 401
    assert adapter.error_reason(400, bad_key) == "API key not valid. Please pass a valid API key."
    assert (
        adapter.map_error_status(
            400, {"error": {"code": 400, "message": "bad", "status": "INVALID_ARGUMENT"}}
        )
        == 400
    )


def test_gemini_config_validates_the_base() -> None:
    with pytest.raises(ValidationError, match="http:// or https://"):
        _adapter(gemini_api_base="generativelanguage.googleapis.com")


def test_gemini_sample_config_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "AIza-sample")
    config = load_config(SAMPLE)
    assert {route.route_type for route in config.routes} == set(RouteType)
    for route in config.routes:
        assert get_adapter_class(route.model.provider) is GeminiAdapter
        assert route.model.config.gemini_api_key.get() == "AIza-sample"


def test_gemini_response_format_given_as_a_bare_string() -> None:
    """``"response_format": "json_object"`` (a string, not an object) used to raise AttributeError."""
    request = _adapter().build_chat_request(
        {"messages": [{"role": "user", "content": "hi"}], "response_format": "json_object"}
    )
    assert request.body["generationConfig"]["responseMimeType"] == "application/json"
