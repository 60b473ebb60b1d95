"""Circuit breakers: one small state machine per upstream model, and the board that holds them.

A breaker is per upstream model (provider + the adapter's exact origin + model), shared by every route that uses that
model and kept across reloads (the board outlives the route table). In-process counters, no locks:
one event loop. :mod:`gateway_server.reliability` asks a breaker before each call and reports the
outcome after it.
"""

from __future__ import annotations

import logging

from gateway_server.errors import GatewayError, UpstreamError, UpstreamStatusError
from gateway_server.providers import Adapter

__all__ = [
    "DEFAULT_COOLDOWN_SECONDS",
    "DEFAULT_FAILURE_THRESHOLD",
    "BreakerBoard",
    "CircuitBreaker",
    "counts_as_failure",
    "upstream_key",
]

# The logger keeps its historical name: operators' log filters match "gateway_server.reliability".
logger = logging.getLogger("gateway_server.reliability")

DEFAULT_FAILURE_THRESHOLD = 5
DEFAULT_COOLDOWN_SECONDS = 30.0


class CircuitBreaker:
    """Closed → open after ``threshold`` consecutive failures → half-open after ``cooldown`` s
    (one probe at a time) → closed on the probe's success, open again on its failure."""

    __slots__ = ("cooldown", "failures", "key", "opened_at", "probe_started", "state", "threshold")

    CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"

    def __init__(
        self,
        key: str,
        threshold: int = DEFAULT_FAILURE_THRESHOLD,
        cooldown: float = DEFAULT_COOLDOWN_SECONDS,
    ) -> None:
        self.key = key
        self.threshold = threshold
        self.cooldown = cooldown
        self.state = self.CLOSED
        self.failures = 0
        self.opened_at = 0.0
        self.probe_started = 0.0

    def available(self, now: float) -> bool:
        """Would :meth:`acquire` let a call through now? (Does not change the state.)"""
        if self.state == self.CLOSED:
            return True
        if self.state == self.OPEN:
            return now - self.opened_at >= self.cooldown
        # half-open: one probe at a time; a probe that never reported (cancelled) expires
        return now - self.probe_started >= self.cooldown

    def acquire(self, now: float) -> bool:
        """May a call go to this upstream now? In half-open, the caller becomes the probe."""
        if self.state == self.CLOSED:
            return True
        if not self.available(now):
            return False
        if self.state == self.OPEN:
            self._change(self.HALF_OPEN, "cool-down over, sending one probe")
        self.probe_started = now
        return True

    def retry_in(self, now: float) -> float:
        if self.state == self.OPEN:
            return max(0.0, self.opened_at + self.cooldown - now)
        if self.state == self.HALF_OPEN:
            return max(0.0, self.probe_started + self.cooldown - now)
        return 0.0

    def success(self) -> None:
        self.failures = 0
        if self.state != self.CLOSED:
            self._change(self.CLOSED, "probe succeeded")

    def failure(self, now: float) -> None:
        self.failures += 1
        if self.state == self.HALF_OPEN:
            self.opened_at = now
            self._change(self.OPEN, f"probe failed; next probe in {self.cooldown:g} s")
        elif self.state == self.CLOSED and self.failures >= self.threshold:
            self.opened_at = now
            self._change(
                self.OPEN, f"{self.failures} consecutive failures; next probe in {self.cooldown:g} s"
            )

    def _change(self, state: str, why: str) -> None:
        logger.warning("circuit %s: %s -> %s (%s)", self.key, self.state, state, why)
        self.state = state


def counts_as_failure(exc: GatewayError) -> bool | None:
    """True: the upstream is failing; False: it answered (alive); None: neither (429: busy)."""
    if isinstance(exc, UpstreamStatusError):
        status = exc.upstream_status or 0
        if status == 429:
            return None
        return status >= 500
    return isinstance(exc, UpstreamError)


class BreakerBoard:
    """One breaker per upstream model, shared by routes and kept across reloads."""

    __slots__ = ("_breakers", "cooldown", "threshold")

    def __init__(
        self, threshold: int = DEFAULT_FAILURE_THRESHOLD, cooldown: float = DEFAULT_COOLDOWN_SECONDS
    ) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self._breakers: dict[str, CircuitBreaker] = {}

    def get(self, key: str) -> CircuitBreaker:
        breaker = self._breakers.get(key)
        if breaker is None:
            breaker = self._breakers[key] = CircuitBreaker(key, self.threshold, self.cooldown)
        return breaker


def upstream_key(adapter: Adapter) -> str:
    """``provider origin model``: what one circuit breaker guards. The origin is the adapter's own
    (``Adapter.origin``, from the URL it calls), so two routes on different endpoints never share
    a breaker, whatever their config fields are called."""
    return f"{adapter.name} {adapter.origin} {adapter.model_name or '-'}"
