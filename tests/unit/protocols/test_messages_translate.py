"""Anthropic Messages request/response ↔ the internal chat representation (pure functions)."""

from __future__ import annotations

import pytest

from gateway_server.errors import InvalidRequestError, UpstreamStatusError
from gateway_server.protocols import messages


def test_request_to_chat_covers_every_block_kind() -> None:
    payload = {
        "max_tokens": 100,
        "system": [
            {"type": "text", "text": "Rule one.", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "Rule two."},
        ],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in "},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAA"}},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                    {"type": "text", "text": "Looking."},
                    {"type": "tool_use", "id": "toolu_1", "name": "read", "input": {"path": "a.txt"}},
                    {"type": "tool_use", "id": "toolu_2", "name": "read", "input": {"path": "b.txt"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "A"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_2",
                        "content": [{"type": "text", "text": "no such file"}],
                        "is_error": True,
                    },
                    {"type": "text", "text": "Go on."},
                ],
            },
        ],
        "tools": [
            {
                "name": "read",
                "description": "Read a file",
                "input_schema": {"type": "object", "properties": {}},
            }
        ],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "temperature": 0.5,
        "top_p": 0.9,
        "top_k": 5,
        "stop_sequences": ["END"],
        "metadata": {"user_id": "u-1"},
        "stream": True,
    }
    chat = messages.to_chat_request(messages.validate_request(payload))
    assert chat["messages"] == [
        {"role": "system", "content": "Rule one.\nRule two."},
        {"role": "user", "content": [
            {"type": "text", "text": "What is in "},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAA"}},
        ]},
        {"role": "assistant", "content": "Looking.", "tool_calls": [
            {"id": "toolu_1", "type": "function", "function": {"name": "read", "arguments": '{"path":"a.txt"}'}},
            {"id": "toolu_2", "type": "function", "function": {"name": "read", "arguments": '{"path":"b.txt"}'}},
        ]},
        {"role": "tool", "tool_call_id": "toolu_1", "content": "A"},
        {"role": "tool", "tool_call_id": "toolu_2", "content": "Error: no such file"},
        {"role": "user", "content": "Go on."},
    ]  # fmt: skip
    assert chat["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "read",
                "description": "Read a file",
                "parameters": {"type": "object", "properties": {}},
            },
        }
    ]
    assert chat["tool_choice"] == "required" and chat["parallel_tool_calls"] is False
    assert chat["temperature"] == 0.5 and chat["top_p"] == 0.9 and "top_k" not in chat
    assert (
        chat["stop"] == ["END"]
        and chat["user"] == "u-1"
        and chat["max_tokens"] == 100
        and chat["stream"] is True
    )


def test_server_tools_are_refused_by_name() -> None:
    payload = {
        "max_tokens": 5,
        "messages": [{"role": "user", "content": "x"}],
        "tools": [{"type": "web_search_20250305", "name": "web_search"}],
    }
    with pytest.raises(InvalidRequestError, match=r"web_search_20250305.*server tool"):
        messages.to_chat_request(payload)


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"messages": [{"role": "user", "content": "x"}]}, "max_tokens"),
        ({"max_tokens": 5, "messages": []}, "messages"),
        ({"max_tokens": 5, "messages": [{"role": "system", "content": "x"}]}, "messages.0.role"),
        (
            {"max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "temperature": 1.5},
            "temperature",
        ),
        ({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "n": 2}, "n"),
    ],
)
def test_validation_names_the_field(payload: dict, field: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        messages.validate_request(payload)
    assert info.value.status_code == 400 and field in info.value.message


def test_chat_response_to_message() -> None:
    result = {
        "id": "chatcmpl-1",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": "Sure.",
            "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "read", "arguments": '{"path": "x"}'}}],
        }}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13, "prompt_tokens_details": {"cached_tokens": 4}},
    }  # fmt: skip
    message = messages.message_from_chat(result, "claude-sonnet-4-5", "abc")
    assert message == {
        "id": "msg_abc",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [
            {"type": "text", "text": "Sure."},
            {"type": "tool_use", "id": "call_1", "name": "read", "input": {"path": "x"}},
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 6,
            "output_tokens": 3,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 4,
        },
    }


@pytest.mark.parametrize(
    ("status", "kind"),
    [(400, "invalid_request_error"), (401, "authentication_error"), (403, "permission_error"),
     (404, "not_found_error"), (413, "request_too_large"), (429, "rate_limit_error"),
     (502, "api_error"), (503, "overloaded_error"), (504, "timeout_error")],
)  # fmt: skip
def test_error_types_follow_the_status(status: int, kind: str) -> None:
    assert messages.error_type(status) == kind


def test_error_body_shape() -> None:
    exc = UpstreamStatusError(provider="openai", upstream_status=429, reason="slow down")
    import orjson

    body = orjson.loads(messages.error_body(exc))
    assert body["type"] == "error" and body["error"]["type"] == "rate_limit_error"
    assert "slow down" in body["error"]["message"]


def test_count_estimate_is_a_quarter_of_the_characters() -> None:
    payload = {"system": "abcd", "messages": [{"role": "user", "content": "efghijkl"}]}
    assert messages.estimate_input_tokens(payload) == 3
