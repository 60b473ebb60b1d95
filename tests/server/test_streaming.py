"""Streaming through the in-process app: chunk contract, errors after the first byte, no buffering,
and a client that leaves cancels the upstream request."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from gateway_server.app import create_app
from gateway_server.config import parse_config
from gateway_server.testing import FakeOpenAI, Fault, serve_in_thread, wait_until

CHAT = {"messages": [{"role": "user", "content": "one two three four"}], "stream": True}


class TricklingUpstream:
    """A raw TCP upstream that sends one SSE chunk every 0.1 s and records when the peer hangs up."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.closed_by_peer = threading.Event()
        self.sent = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
            )
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                event = b'data: {"choices":[{"index":0,"delta":{"content":"x"},"finish_reason":null}]}\n\n'
                try:
                    conn.sendall(b"%x\r\n%s\r\n" % (len(event), event))
                except OSError:
                    self.closed_by_peer.set()
                    return
                self.sent += 1
                time.sleep(0.1)

    def close(self) -> None:
        self.listener.close()


def _events(text: str) -> list[Any]:
    events = []
    for block in text.split("\n\n"):
        if block.startswith("data: "):
            data = block[len("data: ") :]
            events.append(data if data == "[DONE]" else orjson.loads(data))
    return events


@pytest.fixture(scope="module")
def trickle() -> Iterator[TricklingUpstream]:
    upstream = TricklingUpstream()
    yield upstream
    upstream.close()


@pytest.fixture(scope="module")
def client(fake_openai_server: FakeOpenAI, trickle: TricklingUpstream) -> Iterator[httpx.Client]:
    base = f"{{openai_api_key: sk-x, openai_api_base: '{fake_openai_server.api_base}'}}"
    config = parse_config(
        f"""
routes:
  - name: chat
    route_type: llm/v1/chat
    model: {{provider: openai, name: gpt-4o-mini, config: {base}}}
  - name: completions
    route_type: llm/v1/completions
    model: {{provider: openai, name: gpt-3.5-turbo-instruct, config: {base}}}
  - name: embeddings
    route_type: llm/v1/embeddings
    model: {{provider: openai, name: e, config: {base}}}
  - name: trickle
    route_type: llm/v1/chat
    model: {{provider: openai, name: t, config: {{openai_api_key: sk-x, openai_api_base: 'http://127.0.0.1:{trickle.port}/v1'}}}}
  - name: offline
    route_type: llm/v1/chat
    model: {{provider: fake, name: fake-chat}}
"""
    )
    with serve_in_thread(create_app(config)) as server, httpx.Client(base_url=server.url, timeout=10) as http:
        yield http


@pytest.mark.parametrize(
    "path", ["/endpoints/chat/invocations", "/gateway/chat/invocations", "/v1/chat/completions"]
)
def test_stream_chat_contract(client: httpx.Client, fake_openai: FakeOpenAI, path: str) -> None:
    body = {**CHAT, "model": "chat"} if path.startswith("/v1") else CHAT
    response = client.post(path, json=body)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert float(response.headers["x-gateway-overhead-ms"]) >= 0
    events = _events(response.text)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "one two three four"
    assert chunks[-1]["usage"]["total_tokens"] == 8
    assert fake_openai.last_request.json["stream_options"] == {"include_usage": True}


def test_stream_completions(client: httpx.Client) -> None:
    events = _events(
        client.post("/v1/completions", json={"model": "completions", "prompt": "a b c", "stream": True}).text
    )
    assert events[-1] == "[DONE]"
    assert "".join(c["choices"][0]["text"] for c in events[:-1] if c["choices"]) == "a b c"
    assert events[-2]["usage"]["completion_tokens"] == 3


def test_stream_offline_fake_provider(client: httpx.Client) -> None:
    events = _events(client.post("/gateway/offline/invocations", json=CHAT).text)
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in events[:-1])
    assert text == "This is the fake provider answering: one two three four"
    assert events[-2]["usage"]["total_tokens"] > 0 and events[-1] == "[DONE]"


def test_stream_error_before_first_byte_is_a_normal_status(
    client: httpx.Client, fake_openai: FakeOpenAI
) -> None:
    fake_openai.inject(Fault.rate_limited(retry_after=4))
    response = client.post("/endpoints/chat/invocations", json=CHAT)
    assert response.status_code == 429 and response.headers["retry-after"] == "4"
    assert response.headers["content-type"] == "application/json"


def test_stream_cut_midway_ends_with_an_error_event(client: httpx.Client, fake_openai: FakeOpenAI) -> None:
    fake_openai.inject(Fault.cut_stream(after=2))
    response = client.post("/endpoints/chat/invocations", json=CHAT)
    assert response.status_code == 200
    events = _events(response.text)
    assert "[DONE]" not in events
    assert events[-1]["error"]["code"] == 502
    assert "broke before a complete answer" in events[-1]["error"]["message"]
    assert events[-1]["error"]["request_id"] == response.headers["x-request-id"]  # what to quote


def test_stream_embeddings_refused(client: httpx.Client) -> None:
    response = client.post("/endpoints/embeddings/invocations", json={"input": "x", "stream": True})
    assert (
        response.status_code == 400
        and "does not stream llm/v1/embeddings" in response.json()["error"]["message"]
    )


def test_stream_is_not_buffered(client: httpx.Client, fake_openai: FakeOpenAI) -> None:
    fake_openai.inject(Fault.slow_stream(0.3))
    started = time.monotonic()
    with client.stream("POST", "/endpoints/chat/invocations", json=CHAT) as response:
        lines = response.iter_lines()
        first = next(line for line in lines if line.startswith("data: "))
        first_at = time.monotonic() - started
        rest = [line for line in lines if line.startswith("data: ")]
    total = time.monotonic() - started
    assert orjson.loads(first[6:])["choices"][0]["delta"]["role"] == "assistant"
    assert rest[-1] == "data: [DONE]"
    assert first_at < total - 0.6  # the first chunk arrived while the upstream still had chunks to send


def test_stream_client_disconnect_cancels_upstream(client: httpx.Client, trickle: TricklingUpstream) -> None:
    with client.stream("POST", "/endpoints/trickle/invocations", json=CHAT) as response:
        lines = response.iter_lines()
        assert next(line for line in lines if line.startswith("data: "))
    wait_until(trickle.closed_by_peer.is_set, timeout=5, message="the gateway kept the upstream stream open")
    assert trickle.sent < 60
