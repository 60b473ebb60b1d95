"""The chat-chunks → Anthropic-events state machine, fed recorded chunk sequences: text, tool calls
with split JSON arguments, interleaved blocks, usage, and an upstream error mid-stream."""

from __future__ import annotations

from typing import Any

import orjson

from gateway_server.errors import UpstreamStatusError
from gateway_server.protocols.messages_stream import MessagesStream


def chunk(
    delta: dict[str, Any] | None = None, finish: str | None = None, usage: dict[str, Any] | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish}],
    }
    if usage is not None:
        out["usage"] = usage
    return out


def events(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in raw.decode().split("\n\n"):
        if not block:
            continue
        name_line, data_line = block.split("\n")
        name, data = name_line.removeprefix("event: "), orjson.loads(data_line.removeprefix("data: "))
        assert data["type"] == name  # Anthropic's events repeat their name in the data
        out.append((name, data))
    return out


def run(batches: list[list[dict[str, Any]]], estimate: int = 7) -> list[tuple[str, dict[str, Any]]]:
    machine = MessagesStream("msg_1", "claude-x", estimate)
    raw = b"".join(machine.feed(batch) for batch in batches) + machine.finish()
    return events(raw)


USAGE = {
    "prompt_tokens": 12,
    "completion_tokens": 5,
    "total_tokens": 17,
    "prompt_tokens_details": {"cached_tokens": 2},
}


def test_text_stream_is_anthropics_sequence() -> None:
    got = run(
        [
            [chunk({"role": "assistant", "content": ""})],
            [chunk({"content": "Hel"}), chunk({"content": "lo"})],
            [chunk({}, "stop")],
            [{"object": "chat.completion.chunk", "choices": [], "usage": USAGE}],
        ]
    )
    assert [name for name, _ in got] == [
        "message_start", "content_block_start", "content_block_delta", "content_block_delta",
        "content_block_stop", "message_delta", "message_stop",
    ]  # fmt: skip
    start = got[0][1]["message"]
    assert start["id"] == "msg_1" and start["model"] == "claude-x" and start["content"] == []
    assert start["usage"]["input_tokens"] == 7  # the estimate: never zero in the first event
    assert got[1][1] == {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": ""},
    }
    assert [d["delta"]["text"] for n, d in got if n == "content_block_delta"] == ["Hel", "lo"]
    delta = got[-2][1]
    assert delta["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert delta["usage"]["input_tokens"] == 10 and delta["usage"]["cache_read_input_tokens"] == 2
    assert delta["usage"]["output_tokens"] == 5


def test_tool_calls_with_split_arguments() -> None:
    got = run(
        [
            [chunk({"role": "assistant", "content": "Let me look."})],
            [
                chunk(
                    {
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": "call_a",
                                "type": "function",
                                "function": {"name": "lookup", "arguments": ""},
                            }
                        ]
                    }
                )
            ],
            [chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"te'}}]})],
            [chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'xt": "hi"}'}}]})],
            [
                chunk(
                    {
                        "tool_calls": [
                            {
                                "index": 1,
                                "id": "call_b",
                                "type": "function",
                                "function": {"name": "grep", "arguments": "{}"},
                            }
                        ]
                    }
                )
            ],
            [chunk({}, "tool_calls", usage={"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7})],
        ]
    )
    names = [name for name, _ in got]
    assert names == [
        "message_start",
        "content_block_start", "content_block_delta", "content_block_stop",  # text 0
        "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",  # tool 1
        "content_block_start", "content_block_delta", "content_block_stop",  # tool 2
        "message_delta", "message_stop",
    ]  # fmt: skip
    assert got[4][1]["content_block"] == {"type": "tool_use", "id": "call_a", "name": "lookup", "input": {}}
    parts = [d["delta"]["partial_json"] for n, d in got if n == "content_block_delta" and d["index"] == 1]
    assert orjson.loads("".join(parts)) == {"text": "hi"}
    assert got[8][1]["content_block"]["id"] == "call_b" and got[8][1]["index"] == 2
    assert got[-2][1]["delta"]["stop_reason"] == "tool_use"


def test_interleaved_blocks_keep_their_indices() -> None:
    # Text after a tool call opens a new block; a late argument delta goes to its own tool's index.
    got = run(
        [
            [
                chunk(
                    {
                        "tool_calls": [
                            {"index": 0, "id": "c1", "function": {"name": "a", "arguments": '{"x":'}}
                        ]
                    }
                )
            ],
            [chunk({"content": "thinking aloud"})],
            [chunk({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]})],
            [chunk({}, "tool_calls")],
        ]
    )
    starts = [d for n, d in got if n == "content_block_start"]
    assert [(s["index"], s["content_block"]["type"]) for s in starts] == [(0, "tool_use"), (1, "text")]
    tool_parts = [
        d["delta"]["partial_json"] for n, d in got if n == "content_block_delta" and d["index"] == 0
    ]
    assert orjson.loads("".join(tool_parts)) == {"x": 1}
    stops = [d["index"] for n, d in got if n == "content_block_stop"]
    assert stops == [0, 1]  # each block stopped once


def test_finish_reasons_map_to_stop_reasons() -> None:
    for finish, stop in (("stop", "end_turn"), ("length", "max_tokens"), ("content_filter", "refusal")):
        got = run([[chunk({"content": "x"}, finish)]])
        assert got[-2][1]["delta"]["stop_reason"] == stop


def test_no_usage_from_upstream_keeps_the_estimate() -> None:
    got = run([[chunk({"content": "x"}, "stop")]], estimate=42)
    assert got[-2][1]["usage"]["input_tokens"] == 42


def test_empty_stream_still_starts_and_ends() -> None:
    machine = MessagesStream("msg_2", "m", 1)
    got = events(machine.finish())
    assert [name for name, _ in got] == ["message_start", "message_delta", "message_stop"]


def test_error_mid_stream_is_an_error_event() -> None:
    machine = MessagesStream("msg_3", "m", 1)
    raw = machine.feed([chunk({"content": "partial"})])
    error = UpstreamStatusError(provider="openai", upstream_status=529, reason="overloaded")
    raw += machine.fail(error)
    got = events(raw)
    assert [name for name, _ in got][:3] == ["message_start", "content_block_start", "content_block_delta"]
    name, data = got[-1]
    assert name == "error" and data["error"]["type"] in ("overloaded_error", "api_error")
    assert "overloaded" in data["error"]["message"]
