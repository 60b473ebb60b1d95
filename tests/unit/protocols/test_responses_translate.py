"""Responses API request/response ↔ the internal chat representation, and the response store."""

from __future__ import annotations

import asyncio

import pytest

from gateway_server.errors import InvalidRequestError, ResponseNotFoundError
from gateway_server.protocols import responses
from gateway_server.protocols.response_store import ResponseStore


def test_items_to_chat() -> None:
    payload = {
        "instructions": "Be brief.",
        "input": [
            {
                "role": "user",
                "content": [{"type": "input_text", "text": "Read "}, {"type": "input_text", "text": "a.txt"}],
            },
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"type": "function_call", "call_id": "call_1", "name": "read", "arguments": '{"p":"a"}'},
            {"type": "function_call", "call_id": "call_2", "name": "read", "arguments": '{"p":"b"}'},
            {"type": "function_call_output", "call_id": "call_1", "output": "A"},
            {"type": "function_call_output", "call_id": "call_2", "output": {"missing": True}},
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Both read."}],
            },
            {"role": "user", "content": [{"type": "input_image", "image_url": "https://x/img.png"}]},
        ],
        "tools": [{"type": "function", "name": "read", "parameters": {"type": "object"}, "strict": True}],
        "tool_choice": {"type": "function", "name": "read"},
        "max_output_tokens": 50,
        "temperature": 0.3,
        "text": {
            "format": {"type": "json_schema", "name": "out", "schema": {"type": "object"}, "strict": True}
        },
    }
    chat = responses.to_chat_request(responses.validate_request(payload), responses.history_items(payload))
    assert chat["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Read a.txt"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "read", "arguments": '{"p":"a"}'}},
            {"id": "call_2", "type": "function", "function": {"name": "read", "arguments": '{"p":"b"}'}},
        ]},
        {"role": "tool", "tool_call_id": "call_1", "content": "A"},
        {"role": "tool", "tool_call_id": "call_2", "content": '{"missing":true}'},
        {"role": "assistant", "content": "Both read."},
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/img.png"}}]},
    ]  # fmt: skip
    assert chat["tools"] == [
        {"type": "function", "function": {"name": "read", "parameters": {"type": "object"}, "strict": True}}
    ]
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "read"}}
    assert chat["max_tokens"] == 50 and chat["temperature"] == 0.3
    assert chat["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "out", "schema": {"type": "object"}, "strict": True},
    }


@pytest.mark.parametrize("kind", ["web_search", "file_search", "computer_use_preview", "code_interpreter"])
def test_built_in_tools_are_refused_by_name(kind: str) -> None:
    payload = {"input": "x", "tools": [{"type": kind}]}
    with pytest.raises(InvalidRequestError, match=kind) as info:
        responses.to_chat_request(payload, responses.history_items(payload))
    assert info.value.param == "tools[0]"


def test_missing_input_is_a_400() -> None:
    with pytest.raises(InvalidRequestError, match="'input'"):
        responses.validate_request({"model": "m"})


def test_chat_result_to_response() -> None:
    result = {
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": "Sure.",
                     "tool_calls": [{"id": "call_1", "function": {"name": "f", "arguments": "{}"}}]}}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12},
    }  # fmt: skip
    out = responses.response_from_chat(result, {"input": "x", "metadata": {"a": "b"}}, "resp_1", "gpt-5", 7)
    assert out["id"] == "resp_1" and out["object"] == "response" and out["status"] == "completed"
    assert [item["type"] for item in out["output"]] == ["message", "function_call"]
    assert out["output"][1]["call_id"] == "call_1" and out["output_text"] == "Sure."
    assert out["usage"]["input_tokens"] == 9 and out["usage"]["total_tokens"] == 12
    assert out["metadata"] == {"a": "b"} and out["created_at"] == 7


def test_memory_store_bounds_and_ttl() -> None:
    async def run() -> None:
        store = ResponseStore(max_entries=2, ttl=60)
        for number in range(3):
            assert await store.put(
                {"id": f"resp_{number}", "output": []}, [{"role": "user", "content": str(number)}]
            )
        with pytest.raises(ResponseNotFoundError):
            await store.get("resp_0")  # the oldest went first
        assert (await store.get("resp_2"))["conversation"][0]["content"] == "2"
        await store.delete("resp_2")
        with pytest.raises(ResponseNotFoundError):
            await store.delete("resp_2")
        expired = ResponseStore(ttl=-1)
        await expired.put({"id": "resp_9"}, [])
        with pytest.raises(ResponseNotFoundError):
            await expired.get("resp_9")
        with pytest.raises(InvalidRequestError, match="begins with 'resp'"):
            await store.get("msg_1")

    asyncio.run(run())
