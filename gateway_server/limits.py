"""Rate limits: MLflow's ``limit: {calls, renewal_period}`` plus ``key: route | client_ip | api_key``.

One small interface, :meth:`RateLimiter.hit` ``(route, key) -> Decision``. In one process the
counters are a dict here (:class:`MemoryWindows`, ~2 µs a hit); with ``server.shared_state`` they
live in Redis through the ``limits`` package's storage and scripts, shared by every worker and
replica (docs/scale-out.md). The call sites do not change. (The in-memory store of ``limits.aio``
served the single process before: ~23 µs of gateway CPU a request between its async storage
wrappers, ``hit`` and ``get_window_stats``; the arithmetic itself is a few lines.)

**Sliding-window counter, not fixed window and not moving window.** A fixed window admits up to
2xN within a second across a window boundary, exactly the burst that trips the upstream's own rate
limit (what the limit is usually there to prevent). A moving window is exact but keeps one
timestamp per admitted call: at high limits its memory grows with traffic and each hit slows
down (the benchmark measured +15 MiB and +88 µs a request at 150k calls a minute). The sliding-
window counter weighs the previous window's count by how much of it still overlaps: O(1) memory
per key, and bursts bounded close to N. Both stores count the same way (:func:`window_decision`
for Redis's figures, :meth:`MemoryWindows.hit` for memory's).

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
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gateway_server.errors import ConfigError, RateLimitError, SharedStateUnavailableError

if TYPE_CHECKING:  # the library is imported when a route has a limit, not at every start-up
    import limits

if TYPE_CHECKING:
    from gateway_server.config import GatewayConfig
    from gateway_server.shared import SharedState

__all__ = [
    "Decision",
    "MemoryWindows",
    "RateLimiter",
    "RouteLimit",
    "check_workers",
    "limit_key",
    "window_decision",
]

logger = logging.getLogger("gateway_server.limits")

_AUTHORIZATION = b"authorization"
_LOG_EVERY = 10.0  # seconds between two log lines about the shared store not answering


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
        reset_after = 0.0
        if previous or current:
            reset_after = min(
                left % (period / previous) if previous else math.inf, left if current else math.inf
            )
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


class RateLimiter:
    """Counts calls per (route, key): in this process's memory (:class:`MemoryWindows`), or in
    Redis when ``shared`` is given.

    With Redis (``server.shared_state``, docs/scale-out.md) the counters are the ``limits``
    package's async Redis storage through redis-py, on the process's one connection pool
    (:class:`~gateway_server.shared.SharedState`). A sliding-window hit then costs one round
    trip: the package's own two Lua scripts (take a slot, read the window) run as one script
    (:func:`_one_trip_script`), atomically, and the headers' figures are computed from that window
    here. ``hit`` + ``get_window_stats`` would be two round trips.
    """

    __slots__ = (
        "_errors",
        "_failed_at",
        "_limiter",
        "_memory",
        "_script",
        "shared",
        "storage_uri",
        "strategy",
    )

    def __init__(
        self,
        storage_uri: str = "memory://",
        strategy: str = "sliding-window-counter",
        *,
        shared: SharedState | None = None,
    ) -> None:
        self.shared = shared
        self.storage_uri = shared.url if shared is not None else storage_uri
        self.strategy = strategy
        self._limiter: Any = None  # built on the first hit: most gateways never count anything
        self._script: Any = None  # the one-round-trip sliding-window script (Redis only)
        self._errors: tuple[type[BaseException], ...] = ()  # what "the store did not answer" raises
        self._failed_at = -math.inf
        # The default (no shared state, sliding-window counter) never touches the ``limits`` package.
        use_memory = shared is None and storage_uri == "memory://" and strategy == "sliding-window-counter"
        self._memory = MemoryWindows() if use_memory else None

    def _build(self) -> Any:
        from limits.aio.strategies import STRATEGIES
        from limits.storage import storage_from_string

        if self.shared is None:
            uri = self.storage_uri if self.storage_uri.startswith("async+") else f"async+{self.storage_uri}"
            storage = storage_from_string(uri)
        else:
            from redis import RedisError

            storage = storage_from_string(
                _limits_redis_uri(self.shared.url),
                implementation="redispy",
                connection_pool=self.shared.pool,
                key_prefix=self.shared.limits_prefix,
            )
            self._errors = (RedisError, OSError)
            if self.strategy == "sliding-window-counter":
                bridge = storage.bridge
                self._script = bridge.get_connection().register_script(_one_trip_script(bridge))
        self._limiter = STRATEGIES[self.strategy](storage)
        return self._limiter

    async def hit(self, route: RouteLimit, key: str) -> Decision:
        if self._memory is not None:
            return self._memory.hit(route, key)
        limiter = self._limiter or self._build()
        item = route.item
        try:
            if self._script is not None:
                return await self._hit_one_trip(limiter.storage, route, key)
            allowed = await limiter.hit(item, route.route, key)
            reset_time, remaining = await limiter.get_window_stats(item, route.route, key)
        except self._errors as exc:
            raise self._unavailable(route, exc) from None
        return Decision(allowed, route, remaining, max(0.0, reset_time - time.time()))

    async def _hit_one_trip(self, storage: Any, route: RouteLimit, key: str) -> Decision:
        """Take a slot and read the window with one EVALSHA (the sliding-window counter in Redis)."""
        bridge = storage.bridge
        counter = route.item.key_for(route.route, key)
        keys = (
            bridge.prefixed_key(storage._previous_window_key(counter)),
            bridge.prefixed_key(storage._current_window_key(counter)),
        )
        # redis-py loads the script again by itself when Redis answers NOSCRIPT (after a restart).
        reply = await self._script(keys=keys, args=(route.calls, route.period_seconds, 1))
        return window_decision(route, bool(reply[0]), reply[1:])

    def _unavailable(self, route: RouteLimit, exc: BaseException) -> SharedStateUnavailableError:
        from gateway_server.shared import unreachable

        now = time.monotonic()
        if now - self._failed_at > _LOG_EVERY:  # an outage is one line every few seconds, not per call
            self._failed_at = now
            logger.error("%s", unreachable(self.storage_uri, exc, "calls to rate-limited routes get 503"))
        return SharedStateUnavailableError(
            f"Route '{route.route}' has a rate limit and the gateway's shared state (Redis) did not "
            "answer, so the call was neither counted nor made. Retry shortly."
        )

    async def reset(self) -> None:
        if self._memory is not None:
            self._memory.reset()
        if self._limiter is not None:
            await self._limiter.storage.reset()


@functools.cache
def _package_item(calls: int, period_seconds: int) -> limits.RateLimitItem:
    from limits import RateLimitItemPerSecond

    return RateLimitItemPerSecond(calls, period_seconds, namespace="gateway")


def window_decision(route: RouteLimit, allowed: bool, window: Any) -> Decision:
    """A decision from the Redis sliding-window read: ``[previous count, previous TTL ms, current
    count, current TTL ms]``. The counter weighs the previous window by the share of it that is
    still inside the period (as ``limits`` does), and a slot frees up at the sooner of: the next
    previous-window call dropping out, or the current window turning into the previous one."""
    expiry = route.period_seconds
    previous = int(window[0] or 0)
    previous_left = max(0.0, float(window[1] or 0)) / 1000
    current = int(window[2] or 0)
    current_left = max(0.0, float(window[3] or 0)) / 1000
    remaining = max(0, route.calls - math.floor(previous * previous_left / expiry + current))
    reset_after = 0.0
    if previous or current:
        reset_after = min(
            previous_left % (expiry / previous) if previous else math.inf,
            (current_left % expiry or float(expiry)) if current else math.inf,
        )
    return Decision(allowed, route, remaining, reset_after)


def _one_trip_script(bridge: Any) -> bytes:
    """The ``limits`` package's sliding-window scripts, each wrapped as a Lua function, run in turn.

    ARGV is the acquire script's (limit, expiry, amount); the window script gets its own ARGV
    (expiry) as the function's parameter. The reply is ``[acquired 1|0, previous count, previous
    TTL ms, current count, current TTL ms]``. Taken from the installed package, so the counting
    and the key layout stay exactly the package's.
    """
    return b"\n".join(
        (
            b"local function acquire(ARGV)",
            bridge.SCRIPT_ACQUIRE_SLIDING_WINDOW,
            b"end",
            b"local function window(ARGV)",
            bridge.SCRIPT_SLIDING_WINDOW,
            b"end",
            b"local acquired = acquire(ARGV)",
            b"local stats = window({ARGV[2]})",
            b"return {acquired and 1 or 0, stats[1], stats[2], stats[3], stats[4]}",
        )
    )


def _limits_redis_uri(url: str) -> str:
    """``limits``' spelling of a shared_state URL (its async Redis schemes)."""
    if url.startswith("unix://"):
        return "async+redis+unix://" + url.removeprefix("unix://")
    return "async+" + url


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


def check_workers(config: GatewayConfig, workers: int) -> None:
    """Refuse ``--workers > 1`` when a route has a limit and the counts would be per process.

    With ``server.shared_state`` every worker counts in the same Redis, so any number is fine.
    """
    limited = [route.name for route in config.routes if route.limit is not None]
    if workers <= 1 or not limited or config.server.shared_state:
        return
    names = ", ".join(f"'{name}'" for name in limited)
    raise ConfigError(
        f"--workers {workers}: route(s) {names} have a rate limit ('limit:'), and without "
        f"server.shared_state limits are counted in each worker's own memory, so {workers} workers "
        f"would admit up to {workers} times the configured calls. Set server.shared_state to a "
        "redis:// URL so the workers share the counts (docs/scale-out.md), serve with --workers 1 "
        "(one process handles thousands of requests a second), or remove the limits.",
        path=config.path,
    )
