"""query(..., stream=True): chunks as they arrive, [DONE] ends, error events raise, the connection closes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from mock_gateway import BASE, Recorder, envelope

import gatewayctl
from gatewayctl import AsyncGatewayClient, GatewayClient, RateLimitError, UpstreamStatusError

CHUNKS = [
    b'data: {"choices": [{"delta": {"role": "assistant", "content": "Hel"}}]}\n\n',
    b": keep-alive comment\n\n",
    b'data: {"choices": [{"delta": {"content": "lo"}}]}\n\n',
    b"data: [DONE]\n\n",
    b'data: {"never": "read"}\n\n',
]
SSE = {"content-type": "text/event-stream; charset=utf-8"}


class TrackedStream(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A response body that remembers how much was read and whether it was closed."""

    def __init__(self, parts: list[bytes]) -> None:
        self.parts = parts
        self.sent = 0
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        for part in self.parts:
            self.sent += 1
            yield part

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for part in self.parts:
            self.sent += 1
            yield part

    def close(self) -> None:
        self.closed = True

    async def aclose(self) -> None:
        self.closed = True


def sync_client(recorder: Recorder) -> GatewayClient:
    return GatewayClient(BASE, transport=httpx.MockTransport(recorder))


def test_stream_yields_chunks_until_done_and_sends_stream_true() -> None:
    body = TrackedStream(CHUNKS)
    recorder = Recorder(lambda request: httpx.Response(200, headers=SSE, stream=body))
    with sync_client(recorder) as client:
        chunks = list(client.query("chat", {"messages": []}, stream=True))
    assert chunks == [
        {"choices": [{"delta": {"role": "assistant", "content": "Hel"}}]},
        {"choices": [{"delta": {"content": "lo"}}]},
    ]
    assert recorder.body() == {"messages": [], "stream": True}
    assert body.closed


def test_stopping_early_closes_the_connection() -> None:
    body = TrackedStream(CHUNKS)
    recorder = Recorder(lambda request: httpx.Response(200, headers=SSE, stream=body))
    with sync_client(recorder) as client:
        for _chunk in client.query("chat", {"messages": []}, stream=True):
            break
        assert body.closed
        assert body.sent == 1


def test_with_block_closes_the_stream() -> None:
    body = TrackedStream(CHUNKS)
    recorder = Recorder(lambda request: httpx.Response(200, headers=SSE, stream=body))
    with sync_client(recorder) as client:
        with client.query("chat", {"messages": []}, stream=True) as chunks:
            next(chunks)
        assert body.closed
        assert list(chunks) == []


def test_error_event_after_the_stream_started_raises_typed_error() -> None:
    parts = [
        b'data: {"choices": [{"delta": {"content": "par"}}]}\n\n',
        b'data: {"error": {"message": "openai returned HTTP 500: boom", "type": "upstream_status_error", '
        b'"code": 502}}\n\n',
    ]
    body = TrackedStream(parts)
    recorder = Recorder(lambda request: httpx.Response(200, headers=SSE, stream=body))
    with sync_client(recorder) as client:
        chunks = client.query("chat", {"messages": []}, stream=True)
        assert next(chunks) == {"choices": [{"delta": {"content": "par"}}]}
        with pytest.raises(UpstreamStatusError, match="boom"):
            next(chunks)
    assert body.closed


def test_error_status_is_raised_by_query_itself() -> None:
    recorder = Recorder(lambda request: envelope(429, "too many", "rate_limit_error"))
    with sync_client(recorder) as client, pytest.raises(RateLimitError, match="too many"):
        client.query("chat", {"messages": []}, stream=True)


def test_plain_json_answer_to_a_stream_request_is_one_chunk() -> None:
    answer = {"candidates": [{"text": "whole"}]}
    recorder = Recorder(lambda request: httpx.Response(200, json=answer))
    with sync_client(recorder) as client:
        assert list(client.query("completions", {"prompt": "x"}, stream=True)) == [answer]


def test_fluent_stream_closes_its_own_client(monkeypatch: pytest.MonkeyPatch) -> None:
    body = TrackedStream(CHUNKS)
    recorder = Recorder(lambda request: httpx.Response(200, headers=SSE, stream=body))
    made: list[GatewayClient] = []

    def client(*args: object, **kwargs: object) -> GatewayClient:
        made.append(GatewayClient(*args, transport=httpx.MockTransport(recorder), **kwargs))  # type: ignore[arg-type]
        return made[-1]

    monkeypatch.setattr("gatewayctl.fluent.GatewayClient", client)
    gatewayctl.set_gateway_uri(BASE)
    chunks = gatewayctl.query("chat", {"messages": []}, stream=True)
    assert not made[0]._http.is_closed
    assert len(list(chunks)) == 2
    assert made[0]._http.is_closed


def test_async_stream_yields_chunks_and_closes_on_aclose() -> None:
    body = TrackedStream(CHUNKS)
    recorder = Recorder(lambda request: httpx.Response(200, headers=SSE, stream=body))

    async def scenario() -> list[dict[str, object]]:
        async with AsyncGatewayClient(BASE, transport=httpx.MockTransport(recorder)) as client:
            seen = []
            async with await client.query("chat", {"messages": []}, stream=True) as chunks:
                async for chunk in chunks:
                    seen.append(chunk)
                    break
            return seen

    seen = asyncio.run(scenario())
    assert seen == [{"choices": [{"delta": {"role": "assistant", "content": "Hel"}}]}]
    assert body.closed
    assert body.sent == 1
    assert recorder.body() == {"messages": [], "stream": True}
