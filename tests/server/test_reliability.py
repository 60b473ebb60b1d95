"""Fault injection through the whole gateway: deadline, retries, Retry-After, fallbacks, traffic
split and circuit breakers, against the fake upstreams (a second FakeOpenAI as a live fallback, a
closed port as a dead primary). Each test asserts the status, the body, how many calls each fake
received and that the total time stayed within the route's deadline."""

from __future__ import annotations

import logging
import random
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import orjson
import pytest

from gateway_server.app import create_app
from gateway_server.config import parse_config
from gateway_server.testing import FakeOpenAI, Fault, serve_in_thread

CHAT = {"messages": [{"role": "user", "content": "hello there"}]}
SLACK = 0.4  # scheduling and HTTP overhead allowed on top of a deadline


@pytest.fixture(scope="module")
def fallback_server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI().serve() as fake:
        yield fake


@pytest.fixture
def fallback(fallback_server: FakeOpenAI) -> Iterator[FakeOpenAI]:
    fallback_server.reset()
    yield fallback_server
    fallback_server.reset()


@pytest.fixture
def dead_base() -> str:
    """An ``openai_api_base`` on a port where nothing listens (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def _model(base: str, name: str) -> str:
    return f"{{provider: openai, name: {name}, config: {{openai_api_key: sk-x, openai_api_base: '{base}'}}}}"


Gateway = Callable[..., Any]


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    """``gateway(route_yaml_lines) -> httpx.Client`` on a fresh app (fresh breakers and limits)."""
    stack: list[Any] = []

    @contextmanager
    def serve(routes: str) -> Iterator[httpx.Client]:
        config = parse_config("routes:\n" + routes)
        app = create_app(config)
        with serve_in_thread(app) as server, httpx.Client(base_url=server.url, timeout=30) as http:
            http.app = app  # type: ignore[attr-defined]
            yield http

    def open_(routes: str) -> httpx.Client:
        context = serve(routes)
        stack.append(context)
        return context.__enter__()

    yield open_
    for context in reversed(stack):
        context.__exit__(None, None, None)


def _route(primary: str, *, extra: str = "", name: str = "chat", route_type: str = "llm/v1/chat") -> str:
    return f"""  - name: {name}
    route_type: {route_type}
    model: {primary}
{extra}"""


def _post(client: httpx.Client, body: dict[str, Any] | None = None, path: str = "/gateway/chat/invocations"):
    started = time.monotonic()
    response = client.post(path, json=body or CHAT)
    return response, time.monotonic() - started


# ---------------------------------------------------------------- retries and the deadline


def test_flaky_upstream_fails_twice_then_succeeds(gateway: Gateway, fake_openai: FakeOpenAI) -> None:
    client = gateway(
        _route(
            _model(fake_openai.api_base, "gpt-a"),
            extra="    retry: {attempts: 3, backoff: 0.01}\n    timeout: 3\n",
        )
    )
    fake_openai.inject(Fault.error(500), times=2)
    response, elapsed = _post(client, path="/endpoints/chat/invocations")
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "hello there"
    assert response.headers["x-gateway-model"] == "openai/gpt-a"
    assert len(fake_openai.requests) == 3
    assert elapsed < 3


def test_500_every_time_uses_all_attempts_then_502(gateway: Gateway, fake_openai: FakeOpenAI) -> None:
    client = gateway(
        _route(
            _model(fake_openai.api_base, "gpt-a"),
            extra="    retry: {attempts: 3, backoff: 0.01}\n    timeout: 3\n",
        )
    )
    fake_openai.inject(Fault.error(500), times=None)
    response, elapsed = _post(client)
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["type"] == "upstream_status_error" and "HTTP 500" in error["message"]
    assert len(fake_openai.requests) == 3
    assert elapsed < 3


def test_400_is_not_retried(gateway: Gateway, fake_openai: FakeOpenAI) -> None:
    client = gateway(
        _route(
            _model(fake_openai.api_base, "gpt-a"),
            extra="    retry: {attempts: 3, backoff: 0.01}\n    timeout: 3\n",
        )
    )
    fake_openai.inject(Fault.error(400, {"error": {"message": "bad 'temperature'"}}))
    response, elapsed = _post(client)
    assert response.status_code == 400
    assert "bad 'temperature'" in response.json()["error"]["message"]
    assert len(fake_openai.requests) == 1
    assert elapsed < 3


def test_429_retry_after_is_honoured(gateway: Gateway, fake_openai: FakeOpenAI) -> None:
    client = gateway(
        _route(
            _model(fake_openai.api_base, "gpt-a"),
            extra="    retry: {attempts: 2, backoff: 0.01}\n    timeout: 3\n",
        )
    )
    fake_openai.inject(Fault.rate_limited(retry_after=0.3))
    response, elapsed = _post(client)
    assert response.status_code == 200
    assert response.json()["candidates"][0]["message"]["content"] == "hello there"
    assert len(fake_openai.requests) == 2
    assert 0.3 <= elapsed < 3


def test_429_retry_after_longer_than_the_deadline_answers_at_once(
    gateway: Gateway, fake_openai: FakeOpenAI
) -> None:
    client = gateway(
        _route(
            _model(fake_openai.api_base, "gpt-a"),
            extra="    retry: {attempts: 3, backoff: 0.01}\n    timeout: 2\n",
        )
    )
    fake_openai.inject(Fault.rate_limited(retry_after=30))
    response, elapsed = _post(client)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "30"
    assert "HTTP 429" in response.json()["error"]["message"]
    assert len(fake_openai.requests) == 1
    assert elapsed < 1


def test_reply_slower_than_the_deadline_is_504_within_it(gateway: Gateway, fake_openai: FakeOpenAI) -> None:
    client = gateway(
        _route(
            _model(fake_openai.api_base, "gpt-a"),
            extra="    retry: {attempts: 3, backoff: 0.01}\n    timeout: 0.5\n",
        )
    )
    fake_openai.inject(Fault.slow(3), times=None)
    response, elapsed = _post(client)
    assert response.status_code == 504
    error = response.json()["error"]
    assert error["type"] == "upstream_timeout" and "did not answer within 0.5 s" in error["message"]
    assert len(fake_openai.requests) == 1  # the timeout used up the deadline: no retry
    assert elapsed < 0.5 + SLACK


def test_one_deadline_across_attempts(gateway: Gateway, fake_openai: FakeOpenAI) -> None:
    """A slow 500 eats part of the deadline; the retry gets only what is left."""
    client = gateway(
        _route(
            _model(fake_openai.api_base, "gpt-a"),
            extra="    retry: {attempts: 5, backoff: 0.01}\n    timeout: 1\n",
        )
    )
    fake_openai.inject(Fault.error(500, delay=0.6))
    fake_openai.inject(Fault.slow(3))
    response, elapsed = _post(client)
    assert response.status_code == 504
    assert len(fake_openai.requests) == 2
    assert 0.9 <= elapsed < 1 + SLACK


def test_connection_refused_is_retried_then_502(gateway: Gateway, dead_base: str) -> None:
    client = gateway(
        _route(_model(dead_base, "gpt-a"), extra="    retry: {attempts: 3, backoff: 0.01}\n    timeout: 2\n")
    )
    response, elapsed = _post(client)
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["type"] == "upstream_connection_error" and "could not connect" in error["message"]
    assert elapsed < 2


@pytest.mark.parametrize("fault", [Fault.drop_mid_body(), Fault.disconnect()], ids=["mid-body", "no-answer"])
def test_connection_reset_is_retried(gateway: Gateway, fake_openai: FakeOpenAI, fault: Fault) -> None:
    client = gateway(
        _route(
            _model(fake_openai.api_base, "gpt-a"),
            extra="    retry: {attempts: 2, backoff: 0.01}\n    timeout: 3\n",
        )
    )
    fake_openai.inject(fault)
    response, elapsed = _post(client)
    assert response.status_code == 200
    assert response.json()["candidates"][0]["message"]["content"] == "hello there"
    assert len(fake_openai.requests) == 2
    assert elapsed < 3


def test_malformed_json_is_not_retried_on_the_same_model(gateway: Gateway, fake_openai: FakeOpenAI) -> None:
    client = gateway(
        _route(
            _model(fake_openai.api_base, "gpt-a"),
            extra="    retry: {attempts: 3, backoff: 0.01}\n    timeout: 3\n",
        )
    )
    fake_openai.inject(Fault.not_json())
    response, elapsed = _post(client)
    assert response.status_code == 502
    assert response.json()["error"]["type"] == "upstream_protocol_error"
    assert len(fake_openai.requests) == 1
    assert elapsed < 3


# ---------------------------------------------------------------- fallbacks


def _with_fallback(primary: str, fallback: FakeOpenAI, extra: str = "") -> str:
    return _route(
        primary,
        extra=f"    fallbacks:\n      - {_model(fallback.api_base, 'gpt-fallback')}\n"
        "    retry: {attempts: 2, backoff: 0.01}\n    timeout: 3\n" + extra,
    )


def test_dead_primary_live_fallback(gateway: Gateway, dead_base: str, fallback: FakeOpenAI) -> None:
    client = gateway(_with_fallback(_model(dead_base, "gpt-a"), fallback))
    response, elapsed = _post(client, {**CHAT, "model": "chat"}, path="/v1/chat/completions")
    assert response.status_code == 200
    assert response.headers["x-gateway-model"] == "openai/gpt-fallback"
    assert response.json()["model"] == "gpt-fallback"
    assert len(fallback.requests) == 1
    assert fallback.last_request.json["model"] == "gpt-fallback"
    assert elapsed < 3


def test_malformed_json_goes_to_the_fallback(
    gateway: Gateway, fake_openai: FakeOpenAI, fallback: FakeOpenAI
) -> None:
    client = gateway(_with_fallback(_model(fake_openai.api_base, "gpt-a"), fallback))
    fake_openai.inject(Fault.not_json())
    response, _ = _post(client)
    assert response.status_code == 200
    assert response.json()["metadata"]["model"] == "gpt-fallback"
    assert (len(fake_openai.requests), len(fallback.requests)) == (1, 1)


def test_404_model_unavailable_goes_to_the_fallback(
    gateway: Gateway, fake_openai: FakeOpenAI, fallback: FakeOpenAI
) -> None:
    client = gateway(_with_fallback(_model(fake_openai.api_base, "gpt-a"), fallback))
    gone = {
        "error": {
            "message": "The model `gpt-a` does not exist or you do not have access to it.",
            "code": "model_not_found",
        }
    }
    fake_openai.inject(Fault.error(404, gone))
    response, _ = _post(client)
    assert response.status_code == 200
    assert response.headers["x-gateway-model"] == "openai/gpt-fallback"
    assert (len(fake_openai.requests), len(fallback.requests)) == (1, 1)


def test_other_404_is_answered_without_fallback(
    gateway: Gateway, fake_openai: FakeOpenAI, fallback: FakeOpenAI
) -> None:
    client = gateway(_with_fallback(_model(fake_openai.api_base, "gpt-a"), fallback))
    fake_openai.inject(Fault.error(404, {"error": {"message": "Unknown path /v1/chat/completions"}}))
    response, _ = _post(client)
    assert response.status_code == 404
    assert (len(fake_openai.requests), len(fallback.requests)) == (1, 0)


def test_500s_exhaust_the_primary_then_the_fallback_serves(
    gateway: Gateway, fake_openai: FakeOpenAI, fallback: FakeOpenAI
) -> None:
    client = gateway(_with_fallback(_model(fake_openai.api_base, "gpt-a"), fallback))
    fake_openai.inject(Fault.error(503), times=None)
    response, elapsed = _post(client)
    assert response.status_code == 200
    assert response.headers["x-gateway-model"] == "openai/gpt-fallback"
    assert (len(fake_openai.requests), len(fallback.requests)) == (2, 1)
    assert elapsed < 3


def test_traffic_split_sends_to_both_members(
    gateway: Gateway, fake_openai: FakeOpenAI, fallback: FakeOpenAI
) -> None:
    client = gateway(
        f"""  - name: chat
    route_type: llm/v1/chat
    models:
      - {_model(fake_openai.api_base, "gpt-a")[:-1]}, weight: 3}}
      - {_model(fallback.api_base, "gpt-b")[:-1]}, weight: 1}}
"""
    )
    random.seed(20240601)  # the split draws from the module-level random (no retries here: no jitter)
    served = [_post(client)[0].headers["x-gateway-model"] for _ in range(16)]
    assert served.count("openai/gpt-a") + served.count("openai/gpt-b") == 16
    assert served.count("openai/gpt-a") > served.count("openai/gpt-b") > 0
    assert len(fake_openai.requests) == served.count("openai/gpt-a")


# ---------------------------------------------------------------- streams


def _events(text: str) -> list[Any]:
    events = []
    for block in text.split("\n\n"):
        if block.startswith("data: "):
            data = block[len("data: ") :]
            events.append(data if data == "[DONE]" else orjson.loads(data))
    return events


def test_stream_opening_is_retried(gateway: Gateway, fake_openai: FakeOpenAI) -> None:
    client = gateway(
        _route(
            _model(fake_openai.api_base, "gpt-a"),
            extra="    retry: {attempts: 3, backoff: 0.01}\n    timeout: 3\n",
        )
    )
    fake_openai.inject(Fault.error(500))
    response, elapsed = _post(client, {**CHAT, "stream": True})
    assert response.status_code == 200
    assert response.headers["x-gateway-model"] == "openai/gpt-a"
    events = _events(response.text)
    assert events[-1] == "[DONE]"
    assert len(fake_openai.requests) == 2
    assert elapsed < 3


def test_stream_cut_mid_way_is_not_retried(
    gateway: Gateway, fake_openai: FakeOpenAI, fallback: FakeOpenAI
) -> None:
    client = gateway(_with_fallback(_model(fake_openai.api_base, "gpt-a"), fallback))
    fake_openai.inject(Fault.cut_stream(after=2))
    response, elapsed = _post(client, {**CHAT, "stream": True})
    assert response.status_code == 200
    events = _events(response.text)
    assert "[DONE]" not in events
    assert events[-1]["error"]["type"] == "upstream_connection_error"
    assert (len(fake_openai.requests), len(fallback.requests)) == (1, 0)
    assert elapsed < 3


def test_stream_dead_primary_opens_on_the_fallback(
    gateway: Gateway, dead_base: str, fallback: FakeOpenAI
) -> None:
    client = gateway(_with_fallback(_model(dead_base, "gpt-a"), fallback))
    response, _ = _post(client, {**CHAT, "stream": True})
    assert response.status_code == 200
    assert response.headers["x-gateway-model"] == "openai/gpt-fallback"
    events = _events(response.text)
    assert events[-1] == "[DONE]" and events[0]["model"] == "gpt-fallback"
    assert len(fallback.requests) == 1


# ---------------------------------------------------------------- circuit breaker


def test_breaker_opens_after_five_failures_and_fallbacks_skip_the_dead_upstream(
    gateway: Gateway, dead_base: str, fallback: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    client = gateway(
        _route(
            _model(dead_base, "gpt-a"),
            extra=f"    fallbacks:\n      - {_model(fallback.api_base, 'gpt-fallback')}\n    timeout: 3\n",
        )
    )
    breaker = client.app.state.registry.get("chat").plan.primaries[0].breaker  # type: ignore[attr-defined]
    with caplog.at_level(logging.WARNING, logger="gateway_server.reliability"):
        for _ in range(5):
            assert _post(client)[0].status_code == 200
        assert breaker.state == "open"
        response, elapsed = _post(client)
    assert response.status_code == 200 and response.headers["x-gateway-model"] == "openai/gpt-fallback"
    assert len(fallback.requests) == 6
    assert breaker.failures == 5  # the sixth request did not try the dead upstream
    assert elapsed < 3
    opened = [r.getMessage() for r in caplog.records if "-> open" in r.getMessage()]
    assert len(opened) == 1 and "5 consecutive failures" in opened[0]


def test_all_circuits_open_answers_503_at_once(gateway: Gateway, dead_base: str) -> None:
    client = gateway(_route(_model(dead_base, "gpt-a"), extra="    timeout: 3\n"))
    for _ in range(5):
        assert _post(client)[0].status_code == 502
    response, elapsed = _post(client)
    assert response.status_code == 503
    assert int(response.headers["retry-after"]) >= 1
    assert "circuit open" in response.json()["error"]["message"]
    assert elapsed < 0.5
