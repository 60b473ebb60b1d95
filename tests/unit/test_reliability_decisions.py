"""The pure half of reliability.py (and breaker.py): classification, next step, backoff, breaker, split, deadline."""

from __future__ import annotations

import logging
import random

import pytest

from gateway_server.breaker import BreakerBoard, CircuitBreaker, upstream_key
from gateway_server.config import parse_config
from gateway_server.errors import (
    InvalidRequestError,
    UpstreamConnectionError,
    UpstreamProtocolError,
    UpstreamStatusError,
    UpstreamTimeoutError,
)
from gateway_server.reliability import (
    Action,
    Deadline,
    Kind,
    RetryPolicy,
    backoff_delay,
    build_plan,
    classify,
    model_unavailable,
    next_step,
)


def _status(code: int, reason: str = "x", retry_after: float | None = None) -> UpstreamStatusError:
    return UpstreamStatusError(
        provider="openai", upstream_status=code, reason=reason, retry_after=retry_after
    )


def _upper(low: float, high: float) -> float:
    return high


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (UpstreamConnectionError("refused"), Kind.RETRYABLE),
        (_status(429), Kind.RETRYABLE),
        (_status(500), Kind.RETRYABLE),
        (_status(503), Kind.RETRYABLE),
        (_status(400), Kind.FATAL),
        (_status(422), Kind.FATAL),
        (_status(404, "Unknown path"), Kind.FATAL),
        (_status(404, "The model `gpt-x` does not exist or you do not have access to it."), Kind.NEXT_MODEL),
        (_status(401), Kind.NEXT_MODEL),
        (UpstreamProtocolError("not json"), Kind.NEXT_MODEL),
        (InvalidRequestError("bad"), Kind.FATAL),
    ],
)
def test_classify(error: Exception, kind: Kind) -> None:
    assert classify(error, remaining=5) is kind  # type: ignore[arg-type]


def test_timeout_is_fatal_once_the_deadline_is_used_up() -> None:
    assert classify(UpstreamTimeoutError("slow"), remaining=0) is Kind.FATAL
    assert classify(UpstreamTimeoutError("slow"), remaining=2) is Kind.RETRYABLE


@pytest.mark.parametrize(
    "reason",
    [
        "The model `gpt-5x` does not exist or you do not have access to it.",
        "model: claude-9",
        "The API deployment for this resource does not exist.",
        "DeploymentNotFound",
        "model_not_found",
    ],
)
def test_model_unavailable(reason: str) -> None:
    assert model_unavailable(reason)


@pytest.mark.parametrize("reason", ["Unknown path /v1/chat", "Not Found", "", None])
def test_not_model_unavailable(reason: str | None) -> None:
    assert not model_unavailable(reason)


def test_next_step() -> None:
    policy = RetryPolicy(attempts=3, backoff=0.5)
    assert next_step(_status(500), 1, policy, 10, _upper) == next_step(_status(502), 1, policy, 10, _upper)
    assert next_step(_status(500), 1, policy, 10, _upper).delay == 0.5
    assert next_step(_status(500), 2, policy, 10, _upper).delay == 1.0
    assert next_step(_status(500), 3, policy, 10, _upper).action is Action.NEXT_MODEL  # attempts used up
    assert next_step(_status(400), 1, policy, 10, _upper).action is Action.FAIL
    # Retry-After: honoured when it fits, else this model is given up
    assert next_step(_status(429, retry_after=2), 1, policy, 10, _upper).delay == 2
    assert next_step(_status(429, retry_after=20), 1, policy, 10, _upper).action is Action.NEXT_MODEL
    # a backoff that does not fit in the time left: no retry of this model
    assert next_step(_status(500), 2, policy, 0.5, _upper).action is Action.NEXT_MODEL


def test_backoff_is_full_jitter_and_capped() -> None:
    rng = random.Random(1)
    delays = [backoff_delay(3, 0.5, rng.uniform) for _ in range(200)]
    assert all(0 <= d <= 2.0 for d in delays) and max(delays) > 1.5 and min(delays) < 0.5
    assert backoff_delay(30, 1.0, _upper) == 30.0
    assert backoff_delay(1, 0, _upper) == 0


def test_deadline() -> None:
    now = [100.0]
    deadline = Deadline(2.0, clock=lambda: now[0])
    now[0] = 101.5
    assert deadline.remaining() == 0.5
    now[0] = 103
    assert deadline.remaining() == 0


def test_breaker_cycle(caplog: pytest.LogCaptureFixture) -> None:
    breaker = CircuitBreaker("openai http://x m", threshold=3, cooldown=10)
    with caplog.at_level(logging.WARNING, logger="gateway_server.reliability"):
        for t in range(3):
            assert breaker.acquire(t)
            breaker.failure(t)
        assert breaker.state == "open" and not breaker.acquire(5) and breaker.retry_in(5) == 7
        assert breaker.acquire(12) and breaker.state == "half-open"  # the probe
        assert not breaker.acquire(13)  # one probe at a time
        breaker.failure(14)
        assert breaker.state == "open" and not breaker.acquire(20)
        assert breaker.acquire(24)
        breaker.success()
        assert breaker.state == "closed" and breaker.acquire(25)
    assert [r.getMessage().split(": ", 1)[1].split(" (")[0] for r in caplog.records] == [
        "closed -> open",
        "open -> half-open",
        "half-open -> open",
        "open -> half-open",
        "half-open -> closed",
    ]


def test_breaker_success_resets_the_count() -> None:
    breaker = CircuitBreaker("k", threshold=2, cooldown=1)
    breaker.failure(0)
    breaker.success()
    breaker.failure(0)
    assert breaker.state == "closed"


def _route(yaml: str):  # type: ignore[no-untyped-def]
    return parse_config("routes:\n" + yaml).routes[0]


def test_plan_split_and_fallbacks() -> None:
    route = _route(
        """  - name: chat
    route_type: llm/v1/chat
    models:
      - {provider: openai, name: a, weight: 9, config: {openai_api_key: k, openai_api_base: 'http://h1/v1'}}
      - {provider: openai, name: b, weight: 1, config: {openai_api_key: k, openai_api_base: 'http://h2/v1'}}
    fallbacks:
      - {provider: fake, name: f}
    retry: {attempts: 4, backoff: 0.1}
    timeout: 7
"""
    )
    board = BreakerBoard()
    plan = build_plan(route, board)
    assert plan.timeout == 7 and plan.policy == RetryPolicy(4, 0.1)
    rng = random.Random(7)
    orders = [[t.label for t in plan.order(rng, now=0)] for _ in range(1000)]
    assert all(order[1:] == ["fake/f"] for order in orders)
    share_a = sum(order[0] == "openai/a" for order in orders) / 1000
    assert 0.85 < share_a < 0.95
    # a split member behind an open circuit is not chosen
    for _ in range(5):
        plan.primaries[0].breaker.failure(0)
    assert {plan.order(rng, now=1)[0].label for _ in range(50)} == {"openai/b"}
    # the same upstream model shares one breaker across routes
    assert build_plan(route, board).primaries[0].breaker is plan.primaries[0].breaker


def test_upstream_key_names_provider_origin_and_model() -> None:
    route = _route(
        """  - name: chat
    route_type: llm/v1/chat
    model: {provider: openai, name: gpt, config: {openai_api_key: secret-key, openai_api_base: 'https://H1:443/v1'}}
"""
    )
    adapter = build_plan(route, BreakerBoard()).primaries[0].adapter
    key = upstream_key(adapter)
    assert key == "openai https://h1 gpt" and "secret" not in key


def _bedrock(name: str, endpoint: str) -> str:
    return f"""  - name: {name}
    route_type: llm/v1/chat
    model:
      provider: bedrock
      name: anthropic.claude-3-haiku
      config:
        aws_config: {{aws_region: us-east-1, aws_access_key_id: AKID, aws_secret_access_key: s3cr3t, endpoint_url: '{endpoint}'}}
"""


def test_breakers_are_keyed_by_the_exact_upstream_origin() -> None:
    """Two Bedrock routes in one region on different endpoints: the key used to be guessed from
    config field names (``aws_region`` before ``endpoint_url``), so they shared one breaker and one
    failing endpoint paused the other."""
    config = parse_config(
        "routes:\n" + _bedrock("east", "http://127.0.0.1:8001") + _bedrock("proxy", "http://127.0.0.1:8002")
    )
    board = BreakerBoard(threshold=2)
    first, second = (build_plan(route, board).primaries[0] for route in config.routes)
    assert first.breaker is not second.breaker
    assert upstream_key(first.adapter) == "bedrock http://127.0.0.1:8001 anthropic.claude-3-haiku"
    first.breaker.failure(0)
    first.breaker.failure(0)
    assert not first.breaker.available(1) and second.breaker.available(1)
