"""Deadline, retries, fallbacks and traffic split (over circuit breakers): wrappers around an adapter.

A route's reliability settings become one :class:`Plan` when the route is loaded (the registry
builds it next to the adapter), so a request only walks precomputed tuples. The module has two
halves:

- **pure decisions** (no I/O, clock and randomness passed in): :func:`classify` sorts an upstream
  failure into retry / next model / give up, :func:`next_step` turns that, the attempt number, the
  policy and the time left into "wait this long and retry", "go to the next model" or "answer the
  error", :func:`backoff_delay` is exponential backoff with full jitter, :meth:`Plan.order` picks
  the split member and appends the fallbacks;
- **the async loops**, :func:`call` and :func:`open_stream`, which only follow those decisions.

Rules (SPEC §2, docs/reliability.md):

- one deadline (``timeout``) covers every attempt and every fallback; each attempt gets what is left;
- retried: connection errors, 429 and 5xx. ``Retry-After`` is honoured when it fits in the time
  left, else this model is given up (the next one is tried, or the error is answered);
- next model without retrying this one: an unreadable 2xx (not JSON, wrong shape), a 404 that says
  the model itself is unavailable, 401/403 (the gateway's credentials for that upstream are wrong);
- never retried: other 4xx (the caller's request is wrong) and a timeout that used up the deadline;
- a stream is retried only while opening: once a chunk is ready it is the caller's.

Circuit breakers (:mod:`gateway_server.breaker`) are per upstream model, shared by every route that
uses that model and kept across reloads; the loops here ask them before each call and report to them
after.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any

from gateway_server.breaker import BreakerBoard, CircuitBreaker, counts_as_failure, upstream_key
from gateway_server.errors import (
    CircuitOpenError,
    GatewayError,
    UpstreamConnectionError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamStatusError,
    UpstreamTimeoutError,
)
from gateway_server.observability import CURRENT, NO_RECORD
from gateway_server.providers import Adapter, get_adapter_class
from gateway_server.routes import RouteType
from gateway_server.upstream.clients import Upstreams
from gateway_server.upstream.transport import transport_for
from gateway_server.usage import Price

if TYPE_CHECKING:
    from gateway_server.config import Model, RouteConfig

__all__ = [
    "DEFAULT_TIMEOUT_SECONDS",
    "Action",
    "CircuitOpenError",
    "Deadline",
    "Kind",
    "Plan",
    "RetryPolicy",
    "Step",
    "Target",
    "backoff_delay",
    "build_plan",
    "call",
    "call_with",
    "classify",
    "model_unavailable",
    "next_step",
    "open_stream",
    "open_stream_with",
]

logger = logging.getLogger("gateway_server.reliability")

# MLflow's route timeout (MLFLOW_GATEWAY_ROUTE_TIMEOUT_SECONDS defaults to 300): LLM calls are long.
DEFAULT_TIMEOUT_SECONDS = 300.0
MAX_BACKOFF_SECONDS = 30.0
_MIN_ATTEMPT_SECONDS = 0.001  # less than this left: no point in starting another attempt

Clock = Callable[[], float]


# ---------------------------------------------------------------- pure: classification


class Kind(Enum):
    RETRYABLE = "retryable"  # retry this model (then the next one)
    NEXT_MODEL = "next_model"  # do not retry this model, but a fallback may serve
    FATAL = "fatal"  # answer the error now


class Action(Enum):
    RETRY = "retry"
    NEXT_MODEL = "next_model"
    FAIL = "fail"


@dataclass(frozen=True, slots=True)
class Step:
    action: Action
    delay: float = 0.0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 1  # per model, the first call included
    backoff: float = 0.5  # first delay in seconds; doubles per attempt; full jitter


_MODEL_GONE = re.compile(
    r"(model|deployment)\w*\b.{0,120}?(not\s+(be\s+)?found|does\s+not\s+exist|do(es)?\s+not\s+have\s+access"
    r"|not\s+available|unavailable|no\s+longer|deprecated|decommissioned|retired)"
    r"|model_not_found|deploymentnotfound|not_found_error.{0,40}model"
    r"|^\s*model:\s*\S+\s*$",  # Anthropic's 404 for an unknown model: "model: claude-x"
    re.IGNORECASE | re.DOTALL,
)


def model_unavailable(reason: str | None) -> bool:
    """Does a 404's reason say the *model* is unavailable (not that the path or a resource is)?"""
    return bool(reason) and _MODEL_GONE.search(reason or "") is not None


def classify(exc: GatewayError, remaining: float) -> Kind:
    """What kind of failure ``exc`` is, with ``remaining`` seconds of the deadline left."""
    if isinstance(exc, UpstreamConnectionError):
        return Kind.RETRYABLE
    if isinstance(exc, UpstreamTimeoutError):
        return Kind.RETRYABLE if remaining > _MIN_ATTEMPT_SECONDS else Kind.FATAL
    if isinstance(exc, UpstreamProtocolError):
        return Kind.NEXT_MODEL
    if isinstance(exc, UpstreamStatusError):
        status = exc.upstream_status or 0
        if status == 429 or status >= 500:
            return Kind.RETRYABLE
        if status in (401, 403):
            return Kind.NEXT_MODEL
        if status == 404 and model_unavailable(exc.reason):
            return Kind.NEXT_MODEL
    return Kind.FATAL


def backoff_delay(attempt: int, base: float, uniform: Callable[[float, float], float]) -> float:
    """Full jitter: uniform in [0, base * 2**(attempt-1)], capped (attempt 1 = the first retry)."""
    if base <= 0:
        return 0.0
    return uniform(0.0, min(MAX_BACKOFF_SECONDS, base * 2 ** (attempt - 1)))


def next_step(
    exc: GatewayError,
    attempt: int,
    policy: RetryPolicy,
    remaining: float,
    uniform: Callable[[float, float], float],
) -> Step:
    """After attempt number ``attempt`` (1-based) of one model failed with ``exc``: what now?"""
    kind = classify(exc, remaining)
    if kind is Kind.FATAL:
        return Step(Action.FAIL)
    if kind is Kind.NEXT_MODEL or attempt >= policy.attempts:
        return Step(Action.NEXT_MODEL)
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        # The upstream said when: wait that long if it fits, else give this model up.
        if retry_after >= remaining:
            return Step(Action.NEXT_MODEL)
        return Step(Action.RETRY, retry_after)
    delay = backoff_delay(attempt, policy.backoff, uniform)
    if delay + _MIN_ATTEMPT_SECONDS >= remaining:
        return Step(Action.NEXT_MODEL)  # no time left for a retry of this one; a fallback starts now
    return Step(Action.RETRY, delay)


# ---------------------------------------------------------------- deadline


class Deadline:
    """One total time budget; each attempt gets what is left."""

    __slots__ = ("clock", "end", "seconds")

    def __init__(self, seconds: float, clock: Clock = time.monotonic) -> None:
        self.seconds = seconds
        self.clock = clock
        self.end = clock() + seconds

    def remaining(self) -> float:
        return max(0.0, self.end - self.clock())


# ---------------------------------------------------------------- plan


@dataclass(frozen=True, slots=True)
class Target:
    adapter: Adapter
    label: str  # "<provider>/<model>", the X-Gateway-Model header
    header: bytes
    breaker: CircuitBreaker
    transport: str | None = None  # upstream/transport.py; None: the server's default
    price: Price | None = None  # USD per 1M tokens: each attempt is charged at its own model's price


@dataclass(frozen=True, slots=True)
class Plan:
    primaries: tuple[Target, ...]
    weights: tuple[float, ...] | None  # None: one primary
    fallbacks: tuple[Target, ...]
    policy: RetryPolicy
    timeout: float

    def order(self, rng: random.Random | Any = random, now: float | None = None) -> list[Target]:
        """The models to try, in order: one primary (weighted pick among those whose breaker is
        not open, when the route splits traffic), then the fallbacks."""
        if self.weights is None:
            return [self.primaries[0], *self.fallbacks]
        now = time.monotonic() if now is None else now
        pairs = [
            (t, w) for t, w in zip(self.primaries, self.weights, strict=True) if t.breaker.available(now)
        ]
        if not pairs:
            pairs = list(zip(self.primaries, self.weights, strict=True))
        targets, weights = zip(*pairs, strict=True)
        chosen = rng.choices(targets, weights=weights)[0]
        return [chosen, *self.fallbacks]


def _target(model: Model, board: BreakerBoard, transport: str | None) -> Target:
    adapter_cls = get_adapter_class(model.provider)
    assert adapter_cls is not None and model.config is not None  # guaranteed by config validation
    label = f"{adapter_cls.name}/{model.name or '-'}"
    adapter = adapter_cls(model.config, model.name)
    return Target(
        adapter=adapter,
        label=label,
        header=label.encode("latin-1", "replace"),
        breaker=board.get(upstream_key(adapter)),
        transport=transport_for(adapter.origin, transport),
        price=model.price.build() if model.price is not None else None,
    )


def build_plan(route: RouteConfig, board: BreakerBoard) -> Plan:
    primaries = tuple(_target(model, board, route.transport) for model in route.primary_models)
    weights = None
    if route.models is not None:
        weights = tuple(model.weight for model in route.models)
    retry = route.retry
    policy = RetryPolicy(retry.attempts, retry.backoff) if retry is not None else RetryPolicy()
    return Plan(
        primaries=primaries,
        weights=weights,
        fallbacks=tuple(_target(model, board, route.transport) for model in route.fallbacks),
        policy=policy,
        timeout=route.timeout or DEFAULT_TIMEOUT_SECONDS,
    )


# ---------------------------------------------------------------- the async loops


def _deadline_error(deadline: Deadline, last: GatewayError | None, attempts: int) -> UpstreamTimeoutError:
    provider = getattr(last, "provider", None)
    tries = f"{attempts} attempt{'s' if attempts != 1 else ''}"
    if isinstance(last, UpstreamTimeoutError) or last is None:
        message = (
            f"{provider or 'the upstream'} did not answer within {deadline.seconds:g} s "
            f"(the route's timeout, one deadline for every attempt; {tries})"
        )
    else:
        message = (
            f"no answer within the route's {deadline.seconds:g} s timeout ({tries}); "
            f"last error: {last.message}"
        )
    return UpstreamTimeoutError(message, provider=provider)


def _skipped_error(skipped: Sequence[Target], now: float) -> CircuitOpenError:
    wait = min(target.breaker.retry_in(now) for target in skipped)
    names = ", ".join(target.label for target in skipped)
    return CircuitOpenError(
        f"every model of this route is failing and paused (circuit open): {names}; "
        f"the next probe is in {wait:.0f} s",
        retry_after=max(1.0, wait),
    )


async def _attempts(
    plan: Plan,
    deadline: Deadline,
    run: Callable[[Target, Deadline], Any],
    *,
    rng: random.Random | Any = random,
    sleep: Callable[[float], Any] = asyncio.sleep,
) -> tuple[Any, Target]:
    """Run ``run(target, deadline)`` along the plan until one succeeds; raise the deciding error."""
    last: GatewayError | None = None
    attempts = 0
    skipped: list[Target] = []
    clock = deadline.clock
    record = CURRENT.get() or NO_RECORD  # the invocation's record (request id, metrics, spans)
    order = plan.order(rng, clock())
    for position, target in enumerate(order):
        if not target.breaker.acquire(clock()):
            skipped.append(target)
            continue
        attempt = 0
        while True:
            if deadline.remaining() <= _MIN_ATTEMPT_SECONDS:
                raise _deadline_error(deadline, last, attempts)
            attempt += 1
            attempts += 1
            record.attempt_started(target)
            try:
                result = await run(target, deadline)
            except UpstreamError as exc:
                record.attempt_ended(target, exc)
                failed = counts_as_failure(exc)
                if failed:
                    target.breaker.failure(clock())
                elif failed is False:
                    target.breaker.success()
                last = exc
                step = next_step(exc, attempt, plan.policy, deadline.remaining(), rng.uniform)
                if step.action is Action.FAIL:
                    if isinstance(exc, UpstreamTimeoutError):
                        raise _deadline_error(deadline, exc, attempts) from exc
                    raise
                if step.action is Action.NEXT_MODEL:
                    _log_next_model(target, exc, order[position + 1 :])
                    break
                await sleep(step.delay)
                continue
            target.breaker.success()
            record.attempt_ended(target, None)
            return result, target
    if last is None:
        raise _skipped_error(skipped, clock())
    raise last


def _log_next_model(target: Target, exc: GatewayError, rest: Sequence[Target]) -> None:
    """Only when there is a next model: a route without fallbacks has nothing to try next."""
    if rest:
        logger.info("%s failed (%s); trying the next model (%s)", target.label, exc.message, rest[0].label)


async def call(
    upstream: Upstreams,
    plan: Plan,
    route_type: RouteType,
    payload: dict[str, Any],
    *,
    rng: random.Random | Any = random,
    clock: Clock = time.monotonic,
) -> tuple[dict[str, Any], Target]:
    """One non-streaming invocation along the plan: ``(standard response, the model that served)``."""
    deadline = Deadline(plan.timeout, clock)

    async def run(target: Target, deadline: Deadline) -> dict[str, Any]:
        client = upstream.client(target.transport)
        return await client.call(target.adapter, route_type, payload, deadline.remaining())

    return await _attempts(plan, deadline, run, rng=rng)


async def call_with(
    plan: Plan,
    run: Callable[[Target, float], Any],
    *,
    rng: random.Random | Any = random,
    clock: Clock = time.monotonic,
) -> tuple[Any, Target]:
    """``await run(target, seconds_left)`` along the plan: the same deadline, retries, fallbacks and
    breakers as :func:`call`, for callers that decide per model how to call it (the agent
    protocols pass an Anthropic route's request through natively and translate the others)."""
    deadline = Deadline(plan.timeout, clock)
    return await _attempts(plan, deadline, lambda target, d: run(target, d.remaining()), rng=rng)


async def open_stream(
    upstream: Upstreams,
    plan: Plan,
    route_type: RouteType,
    payload: dict[str, Any],
    *,
    rng: random.Random | Any = random,
    clock: Clock = time.monotonic,
) -> tuple[Target, list[dict[str, Any]] | None, AsyncGenerator[list[dict[str, Any]], None]]:
    """Open a stream along the plan: retried only until its first chunk is ready.

    Chunks come in batches, one per upstream read (``UpstreamClient.stream_batches``). Returns
    ``(model that serves, first batch or None, the rest)``. The deadline bounds the opening
    (every attempt, up to the first chunk); after that each wait for the next bytes is bounded by
    the route's timeout, as for a stream without retries.
    """

    def opener(target: Target) -> AsyncGenerator[list[dict[str, Any]], None]:
        adapter = target.adapter
        return upstream.client(target.transport).stream_batches(adapter, route_type, payload, plan.timeout)

    return await open_stream_with(plan, opener, rng=rng, clock=clock)


async def open_stream_with(
    plan: Plan,
    opener: Callable[[Target], AsyncGenerator[Any, None]],
    *,
    rng: random.Random | Any = random,
    clock: Clock = time.monotonic,
) -> tuple[Target, Any, AsyncGenerator[Any, None]]:
    """:func:`open_stream` with the per-model opening left to ``opener(target)`` (an async generator
    of batches): retried along the plan until its first batch is ready."""
    deadline = Deadline(plan.timeout, clock)

    async def run(target: Target, deadline: Deadline) -> tuple[Any, AsyncGenerator[Any, None]]:
        adapter = target.adapter
        chunks = opener(target)
        try:
            async with asyncio.timeout(deadline.remaining()):
                first = await anext(chunks, None)
        except TimeoutError:
            await chunks.aclose()
            raise UpstreamTimeoutError(
                f"{adapter.name} did not start streaming within the route's deadline", provider=adapter.name
            ) from None
        except BaseException:
            await chunks.aclose()
            raise
        return first, chunks

    (first, chunks), target = await _attempts(plan, deadline, run, rng=rng)
    return target, first, chunks
