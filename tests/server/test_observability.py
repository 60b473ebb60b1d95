"""One invocation's record in one process: retries, fallbacks, upstream errors and refusals in the
metrics, the text access line, request ids, and no misleading "trying the next model" line."""

from __future__ import annotations

import io
import logging
import re
import socket
from collections.abc import Iterator

import httpx
import pytest

from gateway_server.app import create_app
from gateway_server.config import parse_config
from gateway_server.logs import AccessLog, TextFormatter, timestamp
from gateway_server.observability import request_id_of
from gateway_server.testing import FakeOpenAI, Fault, serve_in_thread

CHAT = {"messages": [{"role": "user", "content": "a secret body text"}]}


def _model(base: str, name: str) -> str:
    return f"{{provider: openai, name: {name}, config: {{openai_api_key: sk-obs-key, openai_api_base: '{base}'}}}}"


@pytest.fixture
def dead_base() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/v1"


@pytest.fixture
def second_openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI().serve() as fake:
        yield fake


def _serve(routes: str, stream: io.StringIO) -> Iterator[httpx.Client]:
    app = create_app(parse_config("routes:\n" + routes))
    app.state.access_log = AccessLog("text", stream)
    with serve_in_thread(app) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


def test_retries_fallbacks_and_errors_are_counted_and_logged(
    fake_openai: FakeOpenAI, second_openai: FakeOpenAI, dead_base: str
) -> None:
    routes = (
        f"  - name: chat\n    route_type: llm/v1/chat\n    model: {_model(fake_openai.api_base, 'gpt-a')}\n"
        f"    fallbacks:\n      - {_model(second_openai.api_base, 'gpt-b')}\n"
        "    retry: {attempts: 2, backoff: 0}\n"
        "    limit: {calls: 2, renewal_period: minute}\n"
    )
    fake_openai.inject(Fault.error(503), times=None)  # the primary always fails: 2 attempts, then gpt-b
    lines = io.StringIO()
    for client in _serve(routes, lines):
        answer = client.post("/gateway/chat/invocations", json=CHAT, headers={"x-request-id": "abc-123"})
        assert answer.status_code == 200 and answer.headers["x-request-id"] == "abc-123"
        client.post("/gateway/chat/invocations", json=CHAT)
        refused = client.post("/gateway/chat/invocations", json=CHAT)
        assert refused.status_code == 429 and refused.headers["x-ratelimit-limit"] == "2"
        assert refused.json()["error"]["request_id"] == refused.headers["x-request-id"]
        text = client.get("/metrics").text
    assert 'gateway_upstream_errors_total{route="chat",provider="openai",reason="5xx"} 4' in text
    assert 'gateway_retries_total{route="chat",provider="openai"} 2' in text  # one retry of gpt-a per request
    assert 'gateway_fallbacks_total{route="chat",provider="openai",model="gpt-b"} 2' in text
    assert 'gateway_refused_total{route="chat",reason="rate_limit"} 1' in text
    assert 'gateway_requests_total{route="chat",status="429"} 1' in text
    first = lines.getvalue().splitlines()[0]
    assert re.match(
        r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO \d+ gateway_server\.access: request_id=abc-123 ", first
    )
    assert "route=chat family=gateway status=200" in first
    assert "provider=openai model=gpt-b attempts=3 fallback=openai/gpt-b" in first
    assert "sk-obs-key" not in lines.getvalue() and "secret body" not in lines.getvalue()


def test_no_next_model_line_on_a_route_without_fallbacks(
    fake_openai: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    routes = (
        f"  - name: chat\n    route_type: llm/v1/chat\n    model: {_model(fake_openai.api_base, 'gpt-a')}\n"
    )
    fake_openai.inject(Fault.error(503), times=None)
    with caplog.at_level(logging.INFO, logger="gateway_server"):
        for client in _serve(routes, io.StringIO()):
            assert client.post("/gateway/chat/invocations", json=CHAT).status_code == 502
    assert "trying the next model" not in caplog.text


def test_request_ids_are_kept_only_when_safe() -> None:
    assert request_id_of([(b"x-request-id", b"req-1:a/b+c=d@e.f_g")]) == "req-1:a/b+c=d@e.f_g"
    for bad in (b"", b"a b", b"x" * 129, b"evil\nINFO forged line", "caf\u00e9".encode()):
        generated = request_id_of([(b"x-request-id", bad)])
        assert re.fullmatch(r"[0-9a-f]{32}", generated), bad
    assert request_id_of([]) != request_id_of([])


def test_text_log_lines_start_with_timestamp_level_and_pid() -> None:
    record = logging.LogRecord(
        "gateway_server.reload", logging.WARNING, __file__, 1, "config %s", ("x",), None
    )
    line = TextFormatter().format(record)
    assert re.fullmatch(
        rf"\d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{{3}}Z WARNING {record.process} gateway_server.reload: config x",
        line,
    )
    assert timestamp(0.5) == "1970-01-01T00:00:00.500Z"
