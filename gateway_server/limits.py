"""Rate limits: MLflow's ``limit: {calls, renewal_period}`` plus ``key: route | client_ip | api_key``.

One small interface, :meth:`RateLimiter.hit` ``(route, key) -> Decision``. In one process the
counters are a dict here (:class:`MemoryWindows`, ~2 µs a hit); with ``server.shared_state`` they
live in Redis through the ``limits`` package's storage and scripts, shared by every worker and
replica (:mod:`gateway_server.limits_redis`, docs/scale-out.md). The call sites do not change. (The in-memory store of ``limits.aio``
served the single process before: ~23 µs of gateway CPU a request between its async storage
wrappers, ``hit`` and ``get_window_stats``; the arithmetic itself is a few lines.)

**Sliding-window counter, not fixed window and not moving window.** A fixed window admits up to
2xN within a second across a window boundary, exactly the burst that trips the upstream's own rate
limit (what the limit is usually there to prevent). A moving window is exact but keeps one
timestamp per admitted call: at high limits its memory grows with traffic and each hit slows
down (the benchmark measured +15 MiB and +88 µs a request at 150k calls a minute). The sliding-
window counter weighs the previous window's count by how much of it still overlaps: O(1) memory
per key, and bursts bounded close to N. Both stores count the same way (:func:`window_decision`
in ``limits_redis`` for Redis's figures, :meth:`MemoryWindows.hit` for memory's).

Per-request work is one hit, which also gives the headers' figures; the limit item and the
``X-RateLimit-Limit`` value are computed once per route (:class:`RouteLimit`).

Keys: ``route`` counts every caller together; ``client_ip`` the ASGI client address (behind a
proxy, run uvicorn with ``--proxy-headers`` and ``--forwarded-allow-ips`` so this is the real
caller); ``api_key`` the caller's gateway key: its name when auth has identified it, else the
first 16 hex digits of the sha256 of the ``Authorization`` bearer (never the key itself).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from gateway_server.config import GatewayConfig
from gateway_server.errors import ConfigError, RateLimitError

if TYPE_CHECKING:  # the library is imported when a route counts in Redis, not at every start-up
    import limits

__all__ = [
    "WORKERS_ENV",
    "Decision",
    "MemoryWindows",
    "RateLimiter",
    "RouteLimit",
    "WindowStore",
    "check_workers",
    "limit_key",
    "served_workers",
]

logger = logging.getLogger("gateway_server.limits")

_AUTHORIZATION = b"authorization"


@dataclass(frozen=True, slots=True)
class RouteLimit:
    """A route's limit, precomputed at load time."""

    route: str
    calls: int
    period_seconds: int
    key: str  # route | client_ip | api_key
    limit_header: bytes

    @classmethod
    def build(cls, route: str, calls: int, period_seconds: int, key: str) -> RouteLimit:
        return cls(route, calls, period_seconds, key, str(calls).encode())

    @property
    def item(self) -> limits.RateLimitItem:
        """The ``limits`` package's item (Redis counting only: the package is not imported for
        counting in memory, which saves ~0.1 s of start-up)."""
        return _package_item(self.calls, self.period_seconds)

    def describe(self) -> str:
        unit = "second" if self.period_seconds == 1 else f"{self.period_seconds} seconds"
        return f"{self.calls} per {unit}"


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    limit: RouteLimit
    remaining: int
    reset_after: float  # seconds until a call is admitted again (or the window has room again)

    def headers(self) -> list[tuple[bytes, bytes]]:
        """``X-RateLimit-*`` (reset in delta seconds, as the IETF RateLimit-headers draft does)."""
        return [
            (b"x-ratelimit-limit", self.limit.limit_header),
            (b"x-ratelimit-remaining", str(self.remaining).encode()),
            (b"x-ratelimit-reset", str(math.ceil(self.reset_after)).encode()),
        ]

    def error(self) -> RateLimitError:
        """The 429 of a refused call (its ``Retry-After`` comes from ``reset_after``)."""
        scope = {"route": "", "client_ip": " for this client", "api_key": " for this API key"}[self.limit.key]
        return RateLimitError(
            f"Rate limit exceeded{scope}: route '{self.limit.route}' allows {self.limit.describe()}; "
            f"retry in {math.ceil(self.reset_after)} s.",
            retry_after=max(1.0, math.ceil(self.reset_after)),
        )


class MemoryWindows:
    """Sliding-window counters in this process: per (route, key) the current window's number and
    count and the previous window's count. Windows are ``period`` long on the monotonic clock.
    Keys whose windows have both passed are dropped when the table has doubled since the last
    sweep, so memory follows the number of recently active keys."""

    __slots__ = ("_clock", "_counters", "_sweep_at")

    _MIN_SWEEP = 1024

    def __init__(self, clock: Any = time.monotonic) -> None:
        self._clock = clock
        self._counters: dict[tuple[str, str], list[float]] = {}
        self._sweep_at = self._MIN_SWEEP

    def hit(self, route: RouteLimit, key: str) -> Decision:
        now = self._clock()
        period = route.period_seconds
        window, into = divmod(now, period)
        counters = self._counters
        slot = counters.get((route.route, key))
        if slot is None:
            if len(counters) >= self._sweep_at:
                self._sweep(now)
            slot = counters[(route.route, key)] = [window, 0, 0, (window + 2) * period]
        elif slot[0] != window:  # [window, current, previous, no longer counts after]
            slot[2] = slot[1] if slot[0] == window - 1 else 0
            slot[1] = 0
            slot[0] = window
            slot[3] = (window + 2) * period
        current, previous = slot[1], slot[2]
        left = period - into  # how much of the previous window still overlaps the period
        weighted = previous * left / period + current
        allowed = weighted + 1 <= route.calls
        if allowed:
            current = slot[1] = current + 1
            weighted += 1
        if not allowed:
            reset_after = wait_for_room(route.calls, previous, current, left, period)
        elif previous or current:
            reset_after = min(
                left % (period / previous) if previous else math.inf, left if current else math.inf
            )
        else:
            reset_after = 0.0
        return Decision(allowed, route, max(0, route.calls - math.floor(weighted)), reset_after)

    def _sweep(self, now: float) -> None:
        counters = self._counters
        for name in [name for name, slot in counters.items() if slot[3] <= now]:
            del counters[name]
        self._sweep_at = max(self._MIN_SWEEP, 2 * len(counters))

    def __len__(self) -> int:
        return len(self._counters)

    def reset(self) -> None:
        self._counters.clear()
        self._sweep_at = self._MIN_SWEEP


class WindowStore(Protocol):
    """Where counters live when not in this process's memory (``limits_redis.RedisWindows``)."""

    async def hit(self, route: RouteLimit, key: str) -> Decision: ...

    async def reset(self) -> None: ...


class RateLimiter:
    """Counts calls per (route, key): in this process's memory (:class:`MemoryWindows`) by default,
    or in ``store`` (with ``server.shared_state``: :class:`~gateway_server.limits_redis.RedisWindows`,
    chosen once at start-up by the app state)."""

    __slots__ = ("_memory", "store")

    def __init__(self, store: WindowStore | None = None) -> None:
        self.store = store
        self._memory = MemoryWindows() if store is None else None

    @property
    def memory(self) -> MemoryWindows | None:
        """The in-process windows (None with a shared store): callable without a coroutine."""
        return self._memory

    async def hit(self, route: RouteLimit, key: str) -> Decision:
        if self._memory is not None:
            return self._memory.hit(route, key)
        assert self.store is not None
        return await self.store.hit(route, key)

    async def reset(self) -> None:
        if self._memory is not None:
            self._memory.reset()
        if self.store is not None:
            await self.store.reset()


@functools.cache
def _package_item(calls: int, period_seconds: int) -> limits.RateLimitItem:
    from limits import RateLimitItemPerSecond

    return RateLimitItemPerSecond(calls, period_seconds, namespace="gateway")


def wait_for_room(calls: int, previous: float, current: float, left: float, period: float) -> float:
    """Seconds until a refused caller's next call is admitted, if nobody else calls meanwhile.

    The sliding window admits a call while ``previous * share + current + 1 <= calls``, where
    ``share`` is the part of the previous window still inside the period; it shrinks to 0 over the
    ``left`` seconds until the current window turns, and then the current count becomes the
    previous one and starts to shrink in turn. (Waiting only until the next previous-window call
    drops out, as the ``Retry-After`` once did, is too short whenever the current window alone is
    full: a client that obeyed it was refused again.)
    """
    room = calls - 1
    if current <= room:
        return max(0.0, left - (room - current) * period / previous) if previous else 0.0
    return left + period * (1 - room / current)


def limit_key(kind: str, scope: dict[str, Any], key_name: str | None = None) -> str:
    """What a call is counted under for ``kind`` (see the module docstring)."""
    if kind == "route":
        return "*"
    if kind == "client_ip":
        client = scope.get("client")
        return client[0] if client else "unknown"
    if key_name:
        return "name:" + key_name
    for name, value in scope["headers"]:
        if name == _AUTHORIZATION:
            token = value[7:].strip() if value[:7].lower() == b"bearer " else value.strip()
            return "sha256:" + hashlib.sha256(token).hexdigest()[:16]
    return "anonymous"


WORKERS_ENV = "GATEWAYCTL_WORKERS"  # set by the runner for --workers N: what a reload checks against


def served_workers() -> int:
    """How many worker processes serve this config (the runner's ``--workers``; 1 when unset)."""
    try:
        return max(1, int(os.environ.get(WORKERS_ENV, "1")))
    except ValueError:
        return 1


def check_workers(config: GatewayConfig, workers: int) -> None:
    """Refuse ``--workers > 1`` when a route has a limit and the counts would be per process: at
    start-up, and for a reloaded file or a route created at run time (they are refused, and the
    current config kept).

    With ``server.shared_state`` every worker counts in the same Redis, so any number is fine.
    """
    limited = [f"route '{route.name}'" for route in config.routes if route.limit]
    limited += [
        f"key '{key.name}'" for key in (config.auth.keys if config.auth else ()) if key.limit or key.budget
    ]
    if workers <= 1 or not limited or config.server.shared_state:
        return
    names = ", ".join(limited)
    raise ConfigError(
        f"--workers {workers}: {names} {'has' if len(limited) == 1 else 'have'} a rate limit ('limit:') or a budget, and without "
        f"server.shared_state limits and budgets are counted in each worker's own memory, so "
        f"{workers} workers would admit up to {workers} times the configured amounts. Set server.shared_state to a "
        "redis:// URL so the workers share the counts (docs/scale-out.md), serve with --workers 1 "
        "(one process handles thousands of requests a second), or remove the limits.",
        path=config.path,
    )
