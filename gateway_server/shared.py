"""Shared state through Redis (``server.shared_state``): the connection, for counters and routes.

Every process of a deployment (``--workers N``, and every replica) that names the same Redis URL
counts rate limits in it (``limits_redis.py``) and sees the routes created and deleted through any
of them (``runtime/redis_store.py``); docs/scale-out.md has the design. This module is the Redis
handle they share: one connection pool, the key names, and the errors (password masked) when
Redis does not answer. Redis not answering at start-up fails the start, naming the URL.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from gateway_server.errors import SharedStateUnavailableError

if TYPE_CHECKING:
    from redis.asyncio import ConnectionPool, Redis

__all__ = ["POLL_INTERVAL", "SharedState", "check_reachable", "redacted_url", "unreachable"]

POLL_INTERVAL = 0.5  # seconds between two looks at the overlay's version: a change shows within ~0.5 s
TIMEOUT = 2.0  # seconds for a connection or an answer: Redis down is an error, never a hang
KEY_PREFIX = "gatewayctl"


def redacted_url(url: str) -> str:
    """``url`` without its password (``redis://:***@host:6379/0``): safe for logs and errors."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def _client_options() -> dict[str, Any]:
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    # One retry on a fresh connection covers a Redis restart (the pooled socket is dead);
    # more would turn an outage into seconds of waiting on every request.
    return {"socket_connect_timeout": TIMEOUT, "socket_timeout": TIMEOUT, "retry": Retry(NoBackoff(), 1)}


def check_reachable(url: str, timeout: float = TIMEOUT) -> None:
    """PING ``url`` once, synchronously (before anything listens); SharedStateUnavailableError if not."""
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise unreachable(url, exc, "the gateway cannot start") from None
    finally:
        client.close()


def unreachable(url: str, exc: BaseException, consequence: str) -> SharedStateUnavailableError:
    """The error (for logs and the operator) when Redis at ``url`` did not answer."""
    reason = str(exc).replace(url, redacted_url(url)) or type(exc).__name__
    return SharedStateUnavailableError(
        f"server.shared_state: Redis at {redacted_url(url)} did not answer ({reason}); {consequence}. "
        "Start Redis or fix the URL."
    )


class SharedState:
    """One process's handle on the shared Redis: the URL, the key names and one connection pool.

    The rate-limit counters (``limits_redis.py``) and the run-time routes
    (``runtime/redis_store.py``) both use it."""

    def __init__(self, url: str, *, prefix: str = KEY_PREFIX, poll_interval: float = POLL_INTERVAL) -> None:
        from redis.asyncio import ConnectionPool

        self.url = url
        self.poll_interval = poll_interval
        self.pool: ConnectionPool = ConnectionPool.from_url(url, **_client_options())
        self.keys = (f"{prefix}:routes", f"{prefix}:routes:deleted", f"{prefix}:routes:version")
        self.limits_prefix = f"{prefix}:limits"
        self._client: Redis | None = None

    @property
    def client(self) -> Redis:
        if self._client is None:
            from redis.asyncio import Redis

            self._client = Redis(connection_pool=self.pool)
        return self._client

    def unreachable(self, exc: BaseException, consequence: str) -> SharedStateUnavailableError:
        return unreachable(self.url, exc, consequence)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        await self.pool.disconnect()
