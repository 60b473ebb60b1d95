"""Rate-limit counters in Redis (``server.shared_state``): the bridge to the ``limits`` package.

Every worker and replica that names the same Redis counts in the same windows (docs/scale-out.md).
The counters are the ``limits`` package's async Redis storage through redis-py, on the process's
one connection pool (:class:`~gateway_server.shared.SharedState`). A sliding-window hit costs one
round trip: the package's own two Lua scripts (take a slot, read the window) run as one script
(:func:`_one_trip_script`), atomically, and the headers' figures are computed from that window here
(:func:`window_decision`). ``hit`` + ``get_window_stats`` would be two round trips.

Redis not answering: the call is refused with 503 at once (neither counted nor made), and the
outage is logged once every few seconds, not per call.
"""

from __future__ import annotations

import math
import time
from typing import Any

from gateway_server.errors import SharedStateUnavailableError
from gateway_server.limits import Decision, RouteLimit, logger, wait_for_room
from gateway_server.shared import SharedState, unreachable

__all__ = ["RedisWindows", "window_decision"]

_LOG_EVERY = 10.0  # seconds between two log lines about the shared store not answering


class RedisWindows:
    """Sliding-window counters in the shared Redis (a :class:`~gateway_server.limits.WindowStore`)."""

    __slots__ = ("_errors", "_failed_at", "_limiter", "_script", "shared")

    def __init__(self, shared: SharedState) -> None:
        self.shared = shared
        self._limiter: Any = None  # built on the first hit: most gateways never count anything
        self._script: Any = None  # the one-round-trip sliding-window script
        self._errors: tuple[type[BaseException], ...] = ()  # what "the store did not answer" raises
        self._failed_at = -math.inf

    def _build(self) -> Any:
        from limits.aio.strategies import STRATEGIES
        from limits.storage import storage_from_string
        from redis import RedisError

        # The package types its options as scalars; the pool is passed through to redis-py as is.
        options: dict[str, Any] = {
            "implementation": "redispy",
            "connection_pool": self.shared.pool,
            "key_prefix": self.shared.limits_prefix,
        }
        storage: Any = storage_from_string(_limits_redis_uri(self.shared.url), **options)
        self._errors = (RedisError, OSError)
        bridge = storage.bridge
        self._script = bridge.get_connection().register_script(_one_trip_script(bridge))
        strategy: Any = STRATEGIES["sliding-window-counter"]
        self._limiter = strategy(storage)
        return self._limiter

    async def hit(self, route: RouteLimit, key: str) -> Decision:
        limiter = self._limiter or self._build()
        try:
            return await self._hit_one_trip(limiter.storage, route, key)
        except self._errors as exc:
            raise self._unavailable(route, exc) from None

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
        now = time.monotonic()
        if now - self._failed_at > _LOG_EVERY:  # an outage is one line every few seconds, not per call
            self._failed_at = now
            logger.error("%s", unreachable(self.shared.url, exc, "calls to rate-limited routes get 503"))
        return SharedStateUnavailableError(
            f"Route '{route.route}' has a rate limit and the gateway's shared state (Redis) did not "
            "answer, so the call was neither counted nor made. Retry shortly."
        )

    async def reset(self) -> None:
        if self._limiter is not None:
            await self._limiter.storage.reset()


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
    if not allowed:  # the real wait (limits.wait_for_room), as the memory counter reports it
        turnover = max(0.0, current_left - expiry) if current else previous_left
        reset_after = wait_for_room(route.calls, previous, current, turnover, expiry)
    elif previous or current:
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
