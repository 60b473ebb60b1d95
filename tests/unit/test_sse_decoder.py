"""The incremental SSE decoder: any split of the bytes gives the same events."""

from __future__ import annotations

import pytest

from gateway_server.providers.streaming import SSEDecoder, StreamEvent

STREAM = (
    b": keep-alive comment\n\n"
    b'data: {"a": 1}\n\n'
    b"event: message_delta\r\n"
    b'data: {"b": "caf\xc3\xa9"}\r\n\r\n'
    b"data: line one\n"
    b"data: line two\n\n"
    b"data:no-space\n\n"
    b"data: [DONE]\n\n"
)
EXPECTED = [
    StreamEvent('{"a": 1}'),
    StreamEvent('{"b": "café"}', "message_delta"),
    StreamEvent("line one\nline two"),
    StreamEvent("no-space"),
    StreamEvent("[DONE]"),
]


def _decode(pieces: list[bytes]) -> list[StreamEvent]:
    decoder = SSEDecoder()
    events = [event for piece in pieces for event in decoder.feed(piece)]
    return events + decoder.close()


def test_sse_whole_stream_at_once() -> None:
    assert _decode([STREAM]) == EXPECTED


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 16])
def test_sse_any_split_gives_the_same_events(size: int) -> None:
    pieces = [STREAM[i : i + size] for i in range(0, len(STREAM), size)]
    assert _decode(pieces) == EXPECTED


def test_sse_last_event_without_blank_line_is_flushed_on_close() -> None:
    assert _decode([b'data: {"x": 1}']) == [StreamEvent('{"x": 1}')]
