"""The server's HTTP protocol (uvicorn's httptools protocol with one write per loop turn), on the wire.

A tiny ASGI app behind a real uvicorn server on 127.0.0.1, read with raw sockets: the bytes must be
exactly what uvicorn's own protocol sends, only in fewer writes; streamed events must not wait for
each other; a closing answer is flushed before the close.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from gateway_server.http_protocol import CoalescingHttpToolsProtocol
from gateway_server.testing.server import ServerThread

BIG = b"x" * (3 * 1024 * 1024)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/plain":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]})
        await send({"type": "http.response.body", "body": b"hello"})
    elif path == "/close":
        headers = [(b"content-length", b"3"), (b"connection", b"close")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"bye"})
    elif path == "/stream":
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        for index in range(3):
            await send({"type": "http.response.body", "body": b"data: %d\n\n" % index, "more_body": True})
            await asyncio.sleep(0.2)
        await send({"type": "http.response.body", "body": b""})
    elif path == "/big":
        headers = [(b"content-length", str(len(BIG)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": BIG})


@pytest.fixture(scope="module")
def server() -> Iterator[ServerThread]:
    with ServerThread(app, http=CoalescingHttpToolsProtocol, loop="uvloop", lifespan="off") as running:
        yield running


def _connect(server: ServerThread) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=5)
    return sock


def _read_until(sock: socket.socket, marker: bytes) -> bytes:
    data = b""
    while marker not in data:
        piece = sock.recv(65536)
        assert piece, f"closed before {marker!r}; got {data!r}"
        data += piece
    return data


def test_plain_answers_keep_alive_with_exact_bytes(server: ServerThread) -> None:
    with _connect(server) as sock:
        for _ in range(2):
            sock.sendall(b"GET /plain HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = _read_until(sock, b"hello")
            assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and b"content-length: 5\r\n\r\nhello" in answer


def test_a_closing_answer_is_flushed_before_the_close(server: ServerThread) -> None:
    with _connect(server) as sock:
        sock.sendall(b"GET /close HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while piece := sock.recv(65536):
            data += piece
        assert data.endswith(b"\r\n\r\nbye") and b"connection: close" in data


def test_stream_events_are_not_held_back(server: ServerThread) -> None:
    with _connect(server) as sock:
        sock.sendall(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        started = time.monotonic()
        _read_until(sock, b"data: 0")
        first = time.monotonic() - started
        _read_until(sock, b"data: 1")
        second = time.monotonic() - started
        assert second - first > 0.1  # the first event was not held back until the next one (0.2 s later)


def test_a_large_body_arrives_whole(server: ServerThread) -> None:
    with _connect(server) as sock:
        sock.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        head = _read_until(sock, b"\r\n\r\n")
        body = head.split(b"\r\n\r\n", 1)[1]
        while len(body) < len(BIG):
            piece = sock.recv(1 << 20)
            assert piece
            body += piece
        assert body == BIG


class _RecordingTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_write_buffer_size(self) -> int:
        return 0


def test_the_writes_of_one_turn_go_out_as_one() -> None:
    from gateway_server.http_protocol import _CoalescingTransport

    async def scenario() -> tuple[list[bytes], list[bytes], list[bytes]]:
        real = _RecordingTransport()
        wrapped = _CoalescingTransport(real, asyncio.get_running_loop())  # type: ignore[arg-type]
        wrapped.write(b"head ")
        wrapped.write(b"body")
        assert wrapped.get_write_buffer_size() == 9 and real.writes == []
        await asyncio.sleep(0)
        first = list(real.writes)
        wrapped.write(b"next")
        await asyncio.sleep(0)
        second = list(real.writes)
        wrapped.write(b"last")
        wrapped.close()  # flushes before closing
        return first, second, real.writes

    first, second, final = asyncio.run(scenario())
    assert first == [b"head body"] and second == [b"head body", b"next"]
    assert final == [b"head body", b"next", b"last"]


_HEAD_CASES = {
    "mixed": [(b"X-Mixed-Case", b"Value"), (b"Content-Length", b"2"), (b"x-empty", b"")],
    "nolength": [(b"content-type", b"text/plain")],
    "closing": [(b"content-length", b"2"), (b"Connection", b"keep-alive, Close")],
    "chunked": [(b"Transfer-Encoding", b"Chunked")],
    "badvalue": [(b"x-bad", b"a\nb"), (b"content-length", b"2")],
    "badname": [(b"x bad", b"v"), (b"content-length", b"2")],
}


def _written(fast: bool, method: str, status: int, headers: list[tuple[bytes, bytes]]) -> tuple[Any, ...]:
    """What a cycle writes (or raises) for one response, and its framing state: uvicorn's own, or
    with the served head writer (``fast``)."""
    from uvicorn.protocols.http.flow_control import FlowControl
    from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

    from gateway_server.http_protocol import _Cycle

    async def scenario() -> tuple[Any, ...]:
        transport = _RecordingTransport()
        options: dict[str, Any] = {
            "scope": {"method": method, "type": "http"},
            "transport": transport,
            "flow": FlowControl(transport),  # type: ignore[arg-type]
            "logger": None,
            "access_logger": None,
            "access_log": False,
            "default_headers": [(b"date", b"Wed, 02 Dec 2026 10:00:00 GMT")],
            "message_event": asyncio.Event(),
            "expect_100_continue": False,
            "keep_alive": True,
            "on_response": lambda: None,
        }
        cycle = (_Cycle if fast else RequestResponseCycle)(**options)
        try:
            await cycle.send({"type": "http.response.start", "status": status, "headers": headers})
            await cycle.send({"type": "http.response.body", "body": b"" if status == 204 else b"ok"})
        except RuntimeError as exc:
            return ("refused", str(exc), transport.writes)
        return (transport.writes, cycle.keep_alive, cycle.chunked_encoding, cycle.response_complete)

    return asyncio.run(scenario())


@pytest.mark.parametrize(
    ("method", "case", "status"),
    [
        ("GET", "mixed", 200),
        ("GET", "nolength", 200),
        ("HEAD", "nolength", 200),
        ("DELETE", "nolength", 204),
        ("GET", "closing", 200),
        ("GET", "chunked", 200),
        ("GET", "badvalue", 200),
        ("GET", "badname", 200),
    ],
)
def test_the_response_head_is_byte_for_byte_uvicorns(method: str, case: str, status: int) -> None:
    """The served cycle checks the headers with one table lookup for all of them, not two regular
    expressions per header (http_protocol._Cycle): what it writes, refuses and decides about the
    connection must be what uvicorn's own cycle does."""
    ours = _written(True, method, status, _HEAD_CASES[case])
    assert ours == _written(False, method, status, _HEAD_CASES[case])
    assert (ours[0] == "refused") == case.startswith("bad")


def test_the_served_protocol_uses_the_fast_head_writer(server: ServerThread) -> None:
    """A served connection's cycle is an http_protocol._Cycle, made as one (the bytes: above), and
    uvicorn's module names its own class again afterwards."""
    from uvicorn.protocols.http import httptools_impl

    from gateway_server.http_protocol import _Cycle

    seen: list[type] = []
    original = _Cycle.send

    async def spy(self: Any, message: Any) -> None:
        seen.append(type(self))
        await original(self, message)

    _Cycle.send = spy  # type: ignore[method-assign]
    try:
        with _connect(server) as sock:
            sock.sendall(b"GET /plain HTTP/1.1\r\nHost: x\r\n\r\n")
            _read_until(sock, b"hello")
    finally:
        _Cycle.send = original  # type: ignore[method-assign]
    assert seen == [_Cycle, _Cycle]
    assert httptools_impl.RequestResponseCycle is _Cycle.__mro__[1]
