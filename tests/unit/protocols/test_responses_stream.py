"""The chat-chunks → Responses-events state machine, fed recorded chunk sequences: text, function
calls with split arguments, interleaved items, usage, and an upstream error mid-stream."""

from __future__ import annotations

from typing import Any

import orjson

from gateway_server.errors import UpstreamStatusError
from gateway_server.protocols.responses_stream import ResponsesStream

PAYLOAD = {"input": "hi", "instructions": "Be brief.", "metadata": {"k": "v"}}


def chunk(
    delta: dict[str, Any] | None = None, finish: str | None = None, usage: dict[str, Any] | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {"choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish}]}
    if usage is not None:
        out["usage"] = usage
    return out


def events(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in raw.decode().split("\n\n"):
        if block:
            name_line, data_line = block.split("\n")
            data = orjson.loads(data_line.removeprefix("data: "))
            assert data["type"] == name_line.removeprefix("event: ")
            out.append((data["type"], data))
    return out


def run(batches: list[list[dict[str, Any]]]) -> tuple[ResponsesStream, list[tuple[str, dict[str, Any]]]]:
    machine = ResponsesStream(PAYLOAD, "resp_abc", "gpt-5", 1700000000)
    raw = b"".join(machine.feed(batch) for batch in batches) + machine.finish()
    got = events(raw)
    assert [data["sequence_number"] for _, data in got] == list(range(len(got)))
    return machine, got


def test_text_stream() -> None:
    machine, got = run(
        [
            [chunk({"role": "assistant", "content": ""})],
            [chunk({"content": "Hel"}), chunk({"content": "lo"})],
            [chunk({}, "stop", usage={"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6})],
        ]
    )
    assert [name for name, _ in got] == [
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta", "response.output_text.done",
        "response.content_part.done", "response.output_item.done", "response.completed",
    ]  # fmt: skip
    created = got[0][1]["response"]
    assert created["id"] == "resp_abc" and created["status"] == "in_progress" and created["output"] == []
    assert created["instructions"] == "Be brief." and created["metadata"] == {"k": "v"}
    assert got[6][1]["text"] == "Hello"
    final = got[-1][1]["response"]
    assert final["status"] == "completed" and final["output_text"] == "Hello"
    assert final["output"][0]["content"][0]["text"] == "Hello" and final["output"][0]["status"] == "completed"
    assert final["usage"]["input_tokens"] == 4 and final["usage"]["output_tokens"] == 2
    assert machine.response == final


def test_function_calls_with_split_arguments() -> None:
    _, got = run(
        [
            [
                chunk(
                    {
                        "tool_calls": [
                            {"index": 0, "id": "call_1", "function": {"name": "lookup", "arguments": ""}}
                        ]
                    }
                )
            ],
            [chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"te'}}]})],
            [chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'xt":"a"}'}}]})],
            [
                chunk(
                    {
                        "tool_calls": [
                            {"index": 1, "id": "call_2", "function": {"name": "grep", "arguments": "{}"}}
                        ]
                    }
                )
            ],
            [chunk({}, "tool_calls")],
        ]
    )
    names = [name for name, _ in got]
    assert names == [
        "response.created", "response.in_progress",
        "response.output_item.added", "response.function_call_arguments.delta", "response.function_call_arguments.delta",
        "response.function_call_arguments.done", "response.output_item.done",
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.done", "response.output_item.done",
        "response.completed",
    ]  # fmt: skip
    assert got[2][1]["item"]["call_id"] == "call_1" and got[2][1]["item"]["name"] == "lookup"
    assert got[5][1]["arguments"] == '{"text":"a"}'
    output = got[-1][1]["response"]["output"]
    assert [(item["call_id"], item["arguments"]) for item in output] == [
        ("call_1", '{"text":"a"}'),
        ("call_2", "{}"),
    ]


def test_interleaved_text_after_a_call_is_a_new_item() -> None:
    _, got = run(
        [
            [chunk({"content": "Checking."})],
            [chunk({"tool_calls": [{"index": 0, "id": "c", "function": {"name": "f", "arguments": "{}"}}]})],
            [chunk({"content": "Done."})],
            [chunk({}, "tool_calls")],
        ]
    )
    final = got[-1][1]["response"]
    assert [item["type"] for item in final["output"]] == ["message", "function_call", "message"]
    added = [data["output_index"] for name, data in got if name == "response.output_item.added"]
    done = [data["output_index"] for name, data in got if name == "response.output_item.done"]
    assert added == done == [0, 1, 2]


def test_length_is_incomplete() -> None:
    _, got = run([[chunk({"content": "x"}, "length")]])
    name, data = got[-1]
    assert name == "response.incomplete"
    assert data["response"]["incomplete_details"] == {"reason": "max_output_tokens"}


def test_error_mid_stream_is_response_failed() -> None:
    machine = ResponsesStream(PAYLOAD, "resp_x", "m", 1)
    raw = machine.feed([chunk({"content": "partial"})])
    raw += machine.fail(UpstreamStatusError(provider="gemini", upstream_status=500, reason="boom"))
    got = events(raw)
    name, data = got[-1]
    assert name == "response.failed"
    assert data["response"]["status"] == "failed" and "boom" in data["response"]["error"]["message"]
    assert machine.response is None  # nothing to store
