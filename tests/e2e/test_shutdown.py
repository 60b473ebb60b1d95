"""Graceful shutdown of a real server process: SIGTERM/SIGINT stop accepting, in-flight requests and
streams finish, the process exits 0; past ``graceful_timeout`` it still exits 0, promptly.

The server is ``gateway_server.runner.run`` in a subprocess (what ``gatewayctl serve`` calls); the
slow upstream is a FakeOpenAI in this process.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from gateway_server.testing import FakeOpenAI, Fault, free_port, wait_until

pytestmark = pytest.mark.e2e

SENTINEL = "sk-SENTINEL-shutdown-0000"
CHAT = {"messages": [{"role": "user", "content": "one two three four five six"}]}


@contextmanager
def _server(config: Path, graceful_timeout: float) -> Iterator[tuple[subprocess.Popen[str], str]]:
    port = free_port()
    code = (
        "from gateway_server.runner import run; "
        f"run({str(config)!r}, port={port}, graceful_timeout={graceful_timeout})"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _healthy(url) or process.poll() is not None, 20, message="the server to start")
        assert process.poll() is None, process.communicate()[0]
        yield process, url
    finally:
        if process.poll() is None:
            process.kill()
        output = process.communicate(timeout=10)[0]
        assert SENTINEL not in output


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _refuses(url: str) -> bool:
    host, port = url.removeprefix("http://").split(":")
    try:
        with socket.create_connection((host, int(port)), timeout=0.5):
            return False
    except ConnectionRefusedError:
        return True


def _config(tmp_path: Path, fake: FakeOpenAI) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(
        "routes:\n"
        "  - name: chat\n"
        "    route_type: llm/v1/chat\n"
        f"    model: {{provider: openai, name: gpt-4o-mini, config: {{openai_api_key: {SENTINEL}, "
        f"openai_api_base: '{fake.api_base}'}}}}\n",
        encoding="utf-8",
    )
    return path


def _in_background(url: str, body: dict[str, object]) -> tuple[threading.Thread, list[object]]:
    result: list[object] = []

    def call() -> None:
        try:
            result.append(httpx.post(f"{url}/gateway/chat/invocations", json=body, timeout=30))
        except httpx.HTTPError as exc:
            result.append(exc)

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    return thread, result


def test_sigterm_drains_requests_and_streams_then_exits_0(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    fake_openai.inject(Fault(delay=1.0, chunk_delay=0.1), times=None)
    with _server(_config(tmp_path, fake_openai), graceful_timeout=10) as (process, url):
        plain, plain_result = _in_background(url, CHAT)
        stream, stream_result = _in_background(url, {**CHAT, "stream": True})
        fake_openai.wait_for_requests(2)  # both are in flight at the upstream
        process.send_signal(signal.SIGTERM)

        wait_until(lambda: _refuses(url), 5, message="new connections to be refused")
        assert plain.is_alive() and stream.is_alive()  # refused while the old requests still run

        plain.join(10)
        stream.join(10)
        assert process.wait(10) == 0
    (plain_response,) = plain_result
    assert isinstance(plain_response, httpx.Response) and plain_response.status_code == 200
    assert plain_response.json()["candidates"][0]["message"]["content"]
    (stream_response,) = stream_result
    assert isinstance(stream_response, httpx.Response) and stream_response.status_code == 200
    assert stream_response.text.rstrip().endswith("data: [DONE]")


def test_sigint_exits_0(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    with _server(_config(tmp_path, fake_openai), graceful_timeout=5) as (process, url):
        assert httpx.post(f"{url}/gateway/chat/invocations", json=CHAT).status_code == 200
        process.send_signal(signal.SIGINT)
        assert process.wait(10) == 0


def test_grace_period_bounds_the_wait(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    """A request longer than ``graceful_timeout`` is cut off; the process still exits 0, in time."""
    fake_openai.inject(Fault.slow(30), times=None)
    with _server(_config(tmp_path, fake_openai), graceful_timeout=0.5) as (process, url):
        stuck, _ = _in_background(url, CHAT)
        fake_openai.wait_for_requests(1)
        process.send_signal(signal.SIGTERM)
        assert process.wait(5) == 0
        stuck.join(5)
        assert not stuck.is_alive()
