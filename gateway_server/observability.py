"""What one invocation records, and where it goes when it ends: the metrics, the access line and
the trace.

The invocation handler opens a :class:`Record` (request id, path family, start time) and makes it
the current one (a context variable, so the reliability loop and the upstream client can reach it
without new parameters); the reliability loop reports each upstream attempt to it; the handler
closes it with the status. Everything a record learns comes from the config (route, provider,
model, key name) or from closed sets (status, error reason): nothing a caller sends becomes a
label, and no body or secret is ever held.

Request ids: a caller's ``X-Request-Id`` is kept when it is 1 to 128 characters of letters, digits
and ``-_.:/+=@`` (anything else could forge log lines or headers), else a fresh one is generated (32
hex digits). It is returned on the response, sent upstream on every attempt, written in the access
line and in error bodies.
"""

from __future__ import annotations

import itertools
import os
import re
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from gateway_server.errors import (
    GatewayError,
    RateLimitError,
    UpstreamConnectionError,
    UpstreamProtocolError,
    UpstreamStatusError,
    UpstreamTimeoutError,
)
from gateway_server.metrics import FALLBACKS, REFUSED, RETRIES, UPSTREAM_ERRORS, Metrics, RouteSlots
from gateway_server.usage import Usage

if TYPE_CHECKING:
    from gateway_server.routes import RouteType

# reliability.Target (an upstream model of a route's plan). Not imported, even for type checking:
# reliability reports attempts here, so importing it back would knot the import graph.
Target = Any

__all__ = ["CURRENT", "NO_RECORD", "REQUEST_ID_HEADER", "Record", "error_reason", "request_id_of"]

REQUEST_ID_HEADER = b"x-request-id"
_SAFE_ID = re.compile(rb"[A-Za-z0-9\-_.:/+=@]{1,128}")
CURRENT: ContextVar[Record | None] = ContextVar("gatewayctl_invocation", default=None)


_ID_PREFIX = os.urandom(8).hex()  # per process (re-drawn after fork): ids never repeat across workers
_ids = itertools.count(int.from_bytes(os.urandom(4), "big") << 32)


def _reseed() -> None:
    global _ID_PREFIX
    _ID_PREFIX = os.urandom(8).hex()


os.register_at_fork(after_in_child=_reseed)


def request_id_of(headers: list[tuple[bytes, bytes]] | dict[bytes, bytes]) -> str:
    """The caller's ``X-Request-Id`` when it is safe to repeat, else a new one: 32 hex digits, a
    random per-process half and a counter (unique, and no system call per request). ``headers``:
    the scope's list, or that list as a dict (one C call where a loop would be many bytecodes)."""
    value = (headers if isinstance(headers, dict) else dict(headers)).get(REQUEST_ID_HEADER)
    if value is not None and _SAFE_ID.fullmatch(value):
        return value.decode("ascii")
    return f"{_ID_PREFIX}{next(_ids) & 0xFFFFFFFFFFFFFFFF:016x}"


def error_reason(exc: BaseException) -> str:
    """The closed set of upstream failure reasons the metrics and the access line use."""
    if isinstance(exc, UpstreamTimeoutError):
        return "timeout"
    if isinstance(exc, UpstreamConnectionError):
        return "connect"
    if isinstance(exc, UpstreamProtocolError):
        return "protocol"
    if isinstance(exc, UpstreamStatusError):
        status = exc.upstream_status or 0
        if status == 429:
            return "429"
        return "5xx" if status >= 500 else "4xx"
    return "other"


class Attempt:
    __slots__ = ("end_ns", "error", "span", "target")

    def __init__(self, target: Target, span: Any = None) -> None:
        self.target = target
        self.error: str | None = None  # the reason, when it failed
        self.span = span
        self.end_ns: int | None = None  # tracing: when the answer came (its span ends later)


class Record:
    """One invocation, from its first byte to its last.

    Built for the common case (one attempt, no tracing): the constructor sets the few fields every
    request has, an :class:`Attempt` object exists only when tracing, and the metrics are counted
    in two calls (:meth:`Metrics.begin` once the route is known, :meth:`Metrics.end` at the end)."""

    __slots__ = (
        "attempts",
        "fallback",
        "family",
        "finish_reasons",
        "first_chunk",
        "key",
        "last",
        "metrics",
        "primaries",
        "request_id",
        "response_model",
        "route",
        "route_type",
        "served",
        "slots",
        "span",
        "started",
        "stream",
        "tracer",
        "tries",
        "usage",
    )

    def __init__(self, metrics: Metrics, family: str, request_id: str, started: float) -> None:
        self.metrics = metrics
        self.family = family  # gateway, endpoints, v1
        self.request_id = request_id
        self.started = started
        self.route = ""  # set once a configured route is resolved
        self.primaries: tuple[Target, ...] = ()
        self.route_type: RouteType | None = None
        self.response_model: str | None = None  # tracing only: the model the answer names
        self.finish_reasons: list[str] | tuple[()] = ()  # tracing only
        self.key = ""  # the gateway key's name, never the key
        self.tries = 0  # upstream attempts made
        self.last: Target | None = None  # the target of the latest attempt
        self.attempts: list[Attempt] = _NO_ATTEMPTS  # tracing only: one per attempt, with its span
        self.served: Target | None = None
        self.usage: Usage | None = None
        self.stream = False
        self.first_chunk: float | None = None  # seconds from the start to the first chunk (streams)
        self.tracer: Any = None  # tracing.Tracer when OpenTelemetry is configured
        self.span: Any = None
        self.slots: RouteSlots | None = None
        self.fallback: str | None = None  # provider/model of the fallback that answered

    def resolved(self, route: str, route_type: RouteType, primaries: tuple[Target, ...]) -> None:
        self.route = route
        self.route_type = route_type
        self.primaries = primaries
        self.slots = self.metrics.begin(route)

    # -- upstream attempts (called by reliability._attempts) -------------------------------------

    def attempt_started(self, target: Target) -> None:
        last, self.last = self.last, target
        if last is target:  # the same model again: a retry
            self.metrics.add(RETRIES, (self.route, self.last.adapter.name))
        self.tries += 1
        if self.tracer is not None:
            if self.attempts is _NO_ATTEMPTS:
                self.attempts = []
            self.attempts.append(Attempt(target, self.tracer.attempt_span(self, target)))

    def attempt_ended(self, target: Target, exc: BaseException | None) -> None:
        reason = None
        if exc is not None:
            reason = error_reason(exc)
            self.metrics.add(UPSTREAM_ERRORS, (self.route, target.adapter.name, reason))
        slots = self.slots
        if slots is not None and slots.breakers.get(id(target)) != target.breaker.state:
            adapter = target.adapter
            state = slots.breakers[id(target)] = target.breaker.state
            self.metrics.breaker(self.route, adapter.name, adapter.model_name or "", state)
        if self.attempts:
            attempt = self.attempts[-1]
            attempt.error = reason
            if attempt.span is not None:
                self.tracer.end_attempt(attempt, exc)

    def answered(self, result: dict[str, Any]) -> None:
        """Tracing: what the span reports of a whole answer (model, finish reasons)."""
        if self.span is None:
            return
        self.response_model = result.get("model")
        self.finish_reasons = [
            c["finish_reason"] for c in result.get("choices") or () if c.get("finish_reason")
        ]

    def upstream_headers(self, headers: Any) -> Any:
        """The adapter's headers plus the request id (and ``traceparent`` when tracing)."""
        if self.tracer is None:
            return {**headers, "x-request-id": self.request_id}
        extra = {"x-request-id": self.request_id}
        if self.attempts and self.attempts[-1].span is not None:
            self.tracer.inject(self.attempts[-1].span, extra)
        return {**headers, **extra}

    # -- the end ---------------------------------------------------------------------------------

    def finish(self, status: int, seconds: float, overhead: float, error: BaseException | None) -> None:
        """Count it in the metrics (and end its trace)."""
        metrics = self.metrics
        slots = self.slots
        if slots is None:  # no configured route: counted by status only
            metrics.request("", status, self.key, seconds, overhead)
        else:
            served = self.served
            metrics.end(slots, status, self.key, seconds, overhead, served, self.usage)
            if error is not None:
                self._refused(error)
            if served is not None and served is not self.primaries[0] and self._is_fallback(served):
                adapter = served.adapter
                self.fallback = served.label
                metrics.add(FALLBACKS, (self.route, adapter.name, adapter.model_name or ""))
            if self.first_chunk is not None:
                metrics.first_token(slots, self.first_chunk)
        if self.span is not None:
            self.tracer.end_request(self, status, error)

    def _refused(self, error: BaseException) -> None:
        if isinstance(error, RateLimitError):
            self.metrics.add(REFUSED, (self.route, "rate_limit"))
        elif isinstance(error, GatewayError) and error.error_type == "upstream_unavailable":
            self.metrics.add(REFUSED, (self.route, "circuit_open"))

    def _is_fallback(self, served: Target) -> bool:
        """Served by a model that is not one of the route's primaries (a traffic split's pick is not
        a fallback)."""
        return not any(served is target for target in self.primaries)


_NO_ATTEMPTS: list[Attempt] = []  # shared, never appended to: a record without tracing keeps none


class _NoRecord:
    """Stands for a record outside an invocation (the library's direct calls, tests)."""

    def attempt_started(self, target: Target) -> None:
        pass

    def attempt_ended(self, target: Target, exc: BaseException | None) -> None:
        pass


NO_RECORD: Any = _NoRecord()
