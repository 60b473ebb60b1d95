"""ServerThread / serve_in_thread: start on a free port, wait with deadlines, stop cleanly."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import httpx
import pytest

from gateway_server.testing import (
    FakeOpenAI,
    Fault,
    ServerThread,
    free_port,
    serve_in_thread,
    wait_for_port,
    wait_until,
)


async def hello_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": f"hello {scope['path']}".encode()})


async def failing_startup_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "lifespan.startup.failed", "message": "no database"})


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def test_serve_in_thread_serves_on_a_free_port_and_stops() -> None:
    with serve_in_thread(hello_app) as server:
        assert server.port > 0
        assert server.url == f"http://127.0.0.1:{server.port}"
        assert server.running
        assert httpx.get(f"{server.url}/ping").text == "hello /ping"

    assert not server.running
    assert not accepts(server.port)


def test_server_thread_uses_a_given_port(free_port: int) -> None:
    with ServerThread(hello_app, port=free_port) as server:
        assert server.url == f"http://127.0.0.1:{free_port}"
        assert httpx.get(server.url).status_code == 200


def test_server_thread_refuses_a_port_in_use() -> None:
    with serve_in_thread(hello_app) as server, pytest.raises(OSError):
        ServerThread(hello_app, port=server.port).start()


def test_server_thread_reports_a_failed_startup_quickly() -> None:
    started = time.monotonic()
    server = ServerThread(failing_startup_app, lifespan="on")

    with pytest.raises(RuntimeError, match="failed to start"):
        server.start()

    assert time.monotonic() - started < 5
    assert not server.running


def test_server_thread_cannot_start_twice() -> None:
    with serve_in_thread(hello_app) as server, pytest.raises(RuntimeError, match="twice"):
        server.start()


def test_server_thread_runs_on_uvloop_and_httptools_too() -> None:
    with serve_in_thread(hello_app, loop="uvloop", http="httptools") as server:
        assert httpx.get(f"{server.url}/fast").text == "hello /fast"


def test_server_thread_stops_despite_a_request_in_flight() -> None:
    fake = FakeOpenAI()
    fake.inject(Fault.slow(60))
    outcome: list[object] = []

    def call(url: str) -> None:
        try:
            outcome.append(httpx.post(f"{url}/v1/embeddings", json={"model": "m", "input": "x"}, timeout=30))
        except httpx.HTTPError as exc:
            outcome.append(exc)

    with serve_in_thread(fake, timeout_graceful_shutdown=0.2) as server:
        caller = threading.Thread(target=call, args=(server.url,))
        caller.start()
        fake.wait_for_requests(1)
        started = time.monotonic()
    stop_took = time.monotonic() - started
    caller.join(10)

    assert stop_took < 5
    assert not caller.is_alive()
    assert len(outcome) == 1


def test_free_port_returns_a_bindable_port() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_wait_until_polls_to_a_deadline() -> None:
    calls: list[int] = []
    wait_until(lambda: calls.append(1) or len(calls) >= 3, timeout=2)
    assert len(calls) == 3

    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"never within 0\.1s"):
        wait_until(lambda: False, timeout=0.1, message="never")
    assert time.monotonic() - started < 2


def test_wait_for_port_times_out_on_a_closed_port() -> None:
    with pytest.raises(TimeoutError, match="nothing accepted connections"):
        wait_for_port("127.0.0.1", free_port(), timeout=0.2)
