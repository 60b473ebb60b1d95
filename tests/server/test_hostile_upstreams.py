"""Upstreams that answer badly, and callers that send what cannot be served, through the real server.

The gateway runs in a thread under the production protocol (uvloop, ``CoalescingHttpToolsProtocol``)
and its OpenAI routes point at a :class:`RawUpstream` whose bytes each test scripts. Every route has
its own model name, so one test's failures never open the circuit breaker of another's.
"""

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
from gateway_server.http_protocol import CoalescingHttpToolsProtocol
from gateway_server.testing import serve_in_thread
from gateway_server.testing.raw_upstream import RawUpstream, hold, reset

ROUTES = (
    "plain-json",
    "plain-json-tools",
    "not-json",
    "not-utf8",
    "array",
    "late-bad",
    "huge-event",
    "retry-inf",
    "retry-huge",
    "abandoned",
    "sse-reset",
    "json-reset",
)
ANSWER = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "m",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "whole answer"}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 2, "completion_tokens": 2, "total_tokens": 4},
}
CHUNK = {"choices": [{"index": 0, "delta": {"content": "x"}, "finish_reason": None}]}
CHAT = {"messages": [{"role": "user", "content": "hi"}]}
STREAM = {**CHAT, "stream": True}


def json_answer(payload: Any, status: str = "200 OK", *headers: str) -> bytes:
    """A whole JSON answer. It says ``Connection: close`` because the raw upstream closes every
    connection after one answer: without it the gateway pools the connection, and the next test's
    request can be written to it before the close is seen (a flaky "the server closed the connection")."""
    body = orjson.dumps(payload)
    extra = "".join(f"{header}\r\n" for header in headers)
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        f"Connection: close\r\n{extra}\r\n"
    ).encode() + body


def sse_answer(*events: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n" + b"".join(
        events
    )


class Scripts:
    """The raw upstream's behaviour per model name (the route's), looked up from the request body."""

    def __init__(self) -> None:
        self.by_model: dict[str, Any] = {}
        self.abandoned_closed = threading.Event()

    def __call__(self, conn: socket.socket, request: bytes) -> None:
        model = orjson.loads(request.partition(b"\r\n\r\n")[2])["model"]
        self.by_model[model](conn, request)


@pytest.fixture(scope="module")
def scripts() -> Scripts:
    return Scripts()


@pytest.fixture(scope="module")
def upstream(scripts: Scripts) -> Iterator[RawUpstream]:
    with RawUpstream(scripts) as raw:
        yield raw


@pytest.fixture(scope="module")
def client(upstream: RawUpstream) -> Iterator[httpx.Client]:
    base = f"{{openai_api_key: sk-x, openai_api_base: '{upstream.url}/v1'}}"
    routes = "".join(
        f"""
  - name: {name}
    route_type: llm/v1/chat
    timeout: 30
    model: {{provider: openai, name: {name}, config: {base}}}"""
        for name in ROUTES
    )
    config = parse_config("routes:" + routes + "\n")
    app = create_app(config)
    options = {"http": CoalescingHttpToolsProtocol, "loop": "uvloop", "lifespan": "on"}
    with serve_in_thread(app, **options) as server, httpx.Client(base_url=server.url, timeout=20) as http:
        yield http


def _events(text: str) -> list[Any]:
    events = []
    for block in text.split("\n\n"):
        if block.startswith("data: "):
            data = block[len("data: ") :]
            events.append(data if data == "[DONE]" else orjson.loads(data))
    return events


def _envelope(response: httpx.Response) -> dict[str, Any]:
    payload = response.json()
    assert set(payload) == {"error", "detail"}, payload
    return payload["error"]


def test_plain_json_for_a_stream_becomes_a_proper_stream(client: httpx.Client, scripts: Scripts) -> None:
    scripts.by_model["plain-json"] = lambda conn, _: conn.sendall(json_answer(ANSWER))
    response = client.post("/gateway/plain-json/invocations", json=STREAM)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    events = _events(response.text)
    assert events[-1] == "[DONE]"
    assert events[0]["choices"][0]["delta"] == {"role": "assistant", "content": "whole answer"}
    assert events[0]["choices"][0]["finish_reason"] == "stop"
    assert events[-2]["usage"]["total_tokens"] == 4


def test_plain_json_with_tool_calls_streams_indexed_tool_calls(
    client: httpx.Client, scripts: Scripts
) -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    message = {"role": "assistant", "content": None, "tool_calls": [call]}
    answer = {**ANSWER, "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}]}
    scripts.by_model["plain-json-tools"] = lambda conn, _: conn.sendall(json_answer(answer))
    events = _events(client.post("/gateway/plain-json-tools/invocations", json=STREAM).text)
    assert events[0]["choices"][0]["delta"]["tool_calls"] == [{"index": 0, **call}]
    assert events[-1] == "[DONE]"


@pytest.mark.parametrize(
    ("route", "event"),
    [
        ("not-json", b"data: this is not json\n\n"),
        ("not-utf8", b'data: {"choices": "\xff\xfe"}\n\n'),
        ("array", b"data: [1, 2, 3]\n\n"),
    ],
)
def test_an_unreadable_first_event_is_a_502_before_the_stream(
    client: httpx.Client, scripts: Scripts, route: str, event: bytes
) -> None:
    scripts.by_model[route] = lambda conn, _: conn.sendall(sse_answer(event))
    response = client.post(f"/gateway/{route}/invocations", json=STREAM)
    assert response.status_code == 502
    assert "stream event" in _envelope(response)["message"]


def test_an_unreadable_later_event_is_an_error_event_without_done(
    client: httpx.Client, scripts: Scripts
) -> None:
    good = b"data: " + orjson.dumps(CHUNK) + b"\n\n"

    def late_bad(conn: socket.socket, _: bytes) -> None:
        conn.sendall(sse_answer(good))
        time.sleep(0.3)  # its own read: the first chunk is sent before the bad event arrives
        conn.sendall(b'data: ["array"]\n\n')

    scripts.by_model["late-bad"] = late_bad
    response = client.post("/gateway/late-bad/invocations", json=STREAM)
    assert response.status_code == 200
    events = _events(response.text)
    assert events[0]["choices"][0]["delta"]["content"] == "x"
    assert "[DONE]" not in events and "stream event" in events[-1]["error"]["message"]


def test_an_event_without_end_is_cut_at_the_cap(client: httpx.Client, scripts: Scripts) -> None:
    def huge(conn: socket.socket, _: bytes) -> None:
        conn.sendall(sse_answer(b"data: "))
        try:
            for _ in range(24):  # 24 MiB, no newline: past the 16 MiB cap
                conn.sendall(b"a" * (1024 * 1024))
        except OSError:
            pass

    scripts.by_model["huge-event"] = huge
    started = time.monotonic()
    response = client.post("/gateway/huge-event/invocations", json=STREAM)
    assert response.status_code == 502 and "16777216 bytes" in _envelope(response)["message"]
    assert time.monotonic() - started < 10


@pytest.mark.parametrize(
    ("route", "value", "sent"), [("retry-inf", "inf", None), ("retry-huge", "1e308", "3600")]
)
def test_an_upstream_retry_after_is_sanitised(
    client: httpx.Client, scripts: Scripts, route: str, value: str, sent: str | None
) -> None:
    error = {"error": {"message": "slow down", "type": "rate_limit"}}
    scripts.by_model[route] = lambda conn, _: conn.sendall(
        json_answer(error, "429 Too Many Requests", f"Retry-After: {value}")
    )
    response = client.post(f"/gateway/{route}/invocations", json=CHAT)
    assert response.status_code == 429 and "slow down" in _envelope(response)["message"]
    assert response.headers.get("retry-after") == sent


def test_a_caller_that_hangs_up_cancels_the_upstream_call(
    client: httpx.Client, scripts: Scripts, upstream: RawUpstream
) -> None:
    closed = threading.Event()
    scripts.by_model["abandoned"] = lambda conn, _: closed.set() if hold(conn, 15) else None
    host, port = str(client.base_url).removeprefix("http://").rstrip("/").split(":")
    body = orjson.dumps(CHAT)
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(
            b"POST /gateway/abandoned/invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        deadline = time.monotonic() + 5
        while not any(b"abandoned" in request for request in upstream.requests):
            assert time.monotonic() < deadline, "the upstream never got the call"
            time.sleep(0.01)
    # The caller is gone; the route timeout is 30 s, but the upstream connection closes now.
    assert closed.wait(3), "the upstream call kept running after the caller hung up"


@pytest.mark.parametrize("path", ["/gateway/plain-json/invocations", "/api/2.0/gateway/routes/"])
@pytest.mark.parametrize("depth", [200, 1000])
def test_deeply_nested_json_is_a_400(client: httpx.Client, path: str, depth: int) -> None:
    body = b'{"messages": [{"role": "user", "content": ' + b"[" * depth + b"]" * depth + b"}]}"
    response = client.post(path, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400 if path.startswith("/gateway") else response.status_code in (400, 403)
    if response.status_code == 400:
        assert "128 levels" in _envelope(response)["message"]


def test_a_close_delimited_answer_cut_by_a_reset_is_a_502(client: httpx.Client, scripts: Scripts) -> None:
    def cut(conn: socket.socket, _: bytes) -> None:
        # A prefix that parses on its own (the rest, never sent, could have been anything).
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n" + orjson.dumps(ANSWER))
        time.sleep(0.1)
        reset(conn)

    scripts.by_model["json-reset"] = cut
    response = client.post("/gateway/json-reset/invocations", json=CHAT)
    assert response.status_code == 502 and "reset" in _envelope(response)["message"]


def test_a_close_delimited_stream_cut_by_a_reset_ends_with_an_error_event(
    client: httpx.Client, scripts: Scripts
) -> None:
    def cut(conn: socket.socket, _: bytes) -> None:
        conn.sendall(sse_answer(b"data: " + orjson.dumps(CHUNK) + b"\n\n"))
        time.sleep(0.1)
        reset(conn)

    scripts.by_model["sse-reset"] = cut
    response = client.post("/gateway/sse-reset/invocations", json=STREAM)
    events = _events(response.text)
    assert response.status_code == 200 and events[0]["choices"][0]["delta"]["content"] == "x"
    assert "[DONE]" not in events and "reset" in events[-1]["error"]["message"]
