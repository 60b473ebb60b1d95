"""Shared state through Redis (``server.shared_state``): rate-limit counters and run-time routes.

Every process of a deployment (``--workers N``, and every replica) that names the same Redis URL
counts rate limits in it (``limits_redis.py`` uses :attr:`SharedState.pool`) and sees the routes created
and deleted through any of them. The design and its consistency rules are in docs/scale-out.md:

- the config file is the *base* table, the same for every process; Redis holds an *overlay* of
  run-time changes: ``<prefix>:routes`` (hash: name -> the route's JSON exactly as it was given,
  so ``$ENV`` references stay references), ``<prefix>:routes:deleted`` (set: names of file routes
  deleted at run time) and ``<prefix>:routes:version`` (a counter bumped by every change);
- a change is one Lua script (check, write, bump), so two processes creating the same name at once
  get one 200 and one 409;
- each process looks at the version every :data:`POLL_INTERVAL` seconds (one ``GET``) and, when it
  moved, reads the overlay in one transaction and swaps its table: effective routes are the file's,
  minus the deleted names, plus (and overriding) the created ones;
- Redis not answering: start-up fails naming the URL (password masked); at run time a change is
  refused with 503, the table in hand keeps serving, and the watcher logs once and retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import orjson

from gateway_server.config import GatewayConfig, RouteConfig, parse_route
from gateway_server.errors import (
    ConfigError,
    InvalidRequestError,
    RouteExistsError,
    RouteNotFoundError,
    SharedStateUnavailableError,
)

if TYPE_CHECKING:
    from redis.asyncio import ConnectionPool, Redis

    from gateway_server.app_state import GatewayState

__all__ = ["POLL_INTERVAL", "RouteOverlay", "SharedState", "check_reachable", "redacted_url"]

logger = logging.getLogger("gateway_server.shared")

POLL_INTERVAL = 0.5  # seconds between two looks at the overlay's version: a change shows within ~0.5 s
TIMEOUT = 2.0  # seconds for a connection or an answer: Redis down is an error, never a hang
KEY_PREFIX = "gatewayctl"

# KEYS: routes hash, deleted set, version. ARGV: name, route JSON, "1" if the name is a file route.
_CREATE = """
if redis.call('hexists', KEYS[1], ARGV[1]) == 1 then return 0 end
if ARGV[3] == '1' and redis.call('sismember', KEYS[2], ARGV[1]) == 0 then return 0 end
redis.call('hset', KEYS[1], ARGV[1], ARGV[2])
redis.call('srem', KEYS[2], ARGV[1])
return redis.call('incr', KEYS[3])
"""
# KEYS: as above. ARGV: name, "1" if the name is a file route.
_DELETE = """
local removed = redis.call('hdel', KEYS[1], ARGV[1])
if ARGV[2] == '1' and redis.call('sadd', KEYS[2], ARGV[1]) == 1 then removed = 1 end
if removed == 0 then return 0 end
return redis.call('incr', KEYS[3])
"""


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


@dataclass(frozen=True, slots=True)
class RouteOverlay:
    """The run-time changes read from Redis at one version (routes already validated here)."""

    version: int = 0
    created: dict[str, RouteConfig] = field(default_factory=dict)
    deleted: frozenset[str] = frozenset()

    def merge(self, base: GatewayConfig) -> GatewayConfig:
        """The file's routes minus the deleted names, with the created ones added (and winning)."""
        if not self.created and not self.deleted:
            return base
        hidden = self.deleted | self.created.keys()
        routes = [route for route in base.routes if route.name not in hidden]
        routes.extend(self.created[name] for name in sorted(self.created))
        return base.model_copy(update={"routes": routes})  # keeps the file's path and warnings


def parse_overlay(version: int, created: dict[str, bytes], deleted: Iterable[str]) -> RouteOverlay:
    """Validate each created route with this process's environment; one that fails is skipped."""
    routes: dict[str, RouteConfig] = {}
    for name, raw in created.items():
        try:
            routes[name] = parse_route(orjson.loads(raw), source=f"shared route '{name}'")
        except (ConfigError, orjson.JSONDecodeError) as exc:
            # Most often a $ENV reference unset in this process: the others may still serve it.
            logger.error("shared route '%s' is not served by this process:\n%s", name, exc)
    return RouteOverlay(version, routes, frozenset(deleted))


class SharedState:
    """One process's handle on the shared Redis: a connection pool, the overlay, its watcher."""

    def __init__(self, url: str, *, prefix: str = KEY_PREFIX, poll_interval: float = POLL_INTERVAL) -> None:
        from redis.asyncio import ConnectionPool

        self.url = url
        self.poll_interval = poll_interval
        self.pool: ConnectionPool = ConnectionPool.from_url(url, **_client_options())
        self.keys = (f"{prefix}:routes", f"{prefix}:routes:deleted", f"{prefix}:routes:version")
        self.limits_prefix = f"{prefix}:limits"
        self.overlay = RouteOverlay()
        self.base: GatewayConfig | None = None  # the config file's routes, before the overlay
        self._client: Redis | None = None
        self._scripts: dict[str, Any] = {}
        self._failing = False

    @property
    def client(self) -> Redis:
        if self._client is None:
            from redis.asyncio import Redis

            self._client = Redis(connection_pool=self.pool)
            self._scripts = {
                "create": self._client.register_script(_CREATE),
                "delete": self._client.register_script(_DELETE),
            }
        return self._client

    def unreachable(self, exc: BaseException, consequence: str) -> SharedStateUnavailableError:
        return unreachable(self.url, exc, consequence)

    # -- the table ---------------------------------------------------------------------------------

    def effective(self, base: GatewayConfig) -> GatewayConfig:
        """Remember ``base`` (a newly loaded config file) and return it with the overlay applied."""
        self.base = base
        return self.overlay.merge(base)

    def _file_routes(self, state: GatewayState) -> set[str]:
        base = self.base if self.base is not None else state.config
        return {route.name for route in base.routes}

    def _apply(self, state: GatewayState, overlay: RouteOverlay) -> None:
        before = {route.name for route in state.config.routes}
        self.overlay = overlay
        config = self.effective(self.base if self.base is not None else state.config)
        state.registry.replace(config)  # one assignment: requests in flight keep their entries
        state.config = config
        after = {route.name for route in config.routes}
        logger.info(
            "shared routes at version %d: %d route(s) (added: %s; removed: %s)",
            overlay.version,
            len(after),
            ", ".join(sorted(after - before)) or "-",
            ", ".join(sorted(before - after)) or "-",
        )

    async def _read(self) -> tuple[int, dict[str, bytes], set[str]]:
        routes, deleted, version = self.keys
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.get(version).hgetall(routes).smembers(deleted)
            raw_version, created, tombstones = await pipe.execute()
        names = {name.decode(): raw for name, raw in created.items()}
        return int(raw_version or 0), names, {name.decode() for name in tombstones}

    async def refresh(
        self,
        state: GatewayState,
        *,
        force: bool = False,
        consequence: str = "the route table in hand keeps serving",
    ) -> bool:
        """Read the overlay if its version moved (or ``force``) and swap the table; True if it did."""
        from redis import RedisError

        try:
            if not force:
                raw = await self.client.get(self.keys[2])
                if int(raw or 0) == self.overlay.version:
                    self._recovered()
                    return False
            version, created, deleted = await self._read()
        except (RedisError, OSError) as exc:
            raise self.unreachable(exc, consequence) from None
        self._recovered()
        overlay = await asyncio.to_thread(parse_overlay, version, created, deleted)
        self._apply(state, overlay)
        return True

    def _recovered(self) -> None:
        if self._failing:
            self._failing = False
            logger.warning("shared state %s answers again", redacted_url(self.url))

    # -- changes ---------------------------------------------------------------------------------

    async def create(self, state: GatewayState, route: RouteConfig, body: dict[str, Any]) -> None:
        """Add ``route`` (validated; ``body`` as given) for every process; RouteExistsError if taken."""
        literal = [secret for secret in route.secrets() if not secret.is_reference]
        if literal:
            raise InvalidRequestError(
                f"Route '{route.name}' was not created: with server.shared_state, created routes are "
                "stored in Redis as given, so each key must be a $ENV reference (or a path to a file "
                "the gateway can read), never the key itself."
            )
        in_file = "1" if route.name in self._file_routes(state) else "0"
        version = await self._change("create", route.name, orjson.dumps(body), in_file)
        if not version:
            raise RouteExistsError(route.name)
        await self._catch_up(state)

    async def delete(self, state: GatewayState, name: str, noun: str = "route") -> None:
        """Remove ``name`` for every process; RouteNotFoundError if no process could serve it."""
        in_file = "1" if name in self._file_routes(state) else "0"
        if not await self._change("delete", name, in_file):
            raise RouteNotFoundError(name, noun=noun)
        await self._catch_up(state)

    async def _change(self, script: str, *args: Any) -> int:
        from redis import RedisError

        client = self.client
        try:
            return int(await self._scripts[script](keys=list(self.keys), args=list(args), client=client))
        except (RedisError, OSError) as exc:
            error = self.unreachable(exc, "the change was not made")
            logger.error("%s", error)
            raise SharedStateUnavailableError(
                "The change was not made: the gateway's shared state (Redis) did not answer. Retry shortly."
            ) from None

    async def _catch_up(self, state: GatewayState) -> None:
        """Read-your-writes: this process serves the change before answering (others within a poll)."""
        try:
            await self.refresh(state, force=True)
        except SharedStateUnavailableError as exc:  # made, but not read back: the watcher will
            logger.warning("%s", exc)

    # -- lifecycle --------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def running(self, state: GatewayState) -> AsyncIterator[None]:
        """For the app's lifespan: load the overlay (or fail start-up), then watch it."""
        if self.base is None:
            self.base = state.config
        try:
            await self.refresh(state, force=True, consequence="the gateway cannot start")
        except SharedStateUnavailableError:
            await self.close()
            raise
        task = asyncio.create_task(self._watch(state), name="gatewayctl-shared-routes")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await self.close()

    async def _watch(self, state: GatewayState) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            try:
                await self.refresh(state)
            except SharedStateUnavailableError as exc:
                if not self._failing:
                    self._failing = True
                    logger.warning("%s; will look again every %g s", exc, self.poll_interval)
            except Exception:  # the process edge of a background task: log, keep watching
                logger.exception("shared route watcher failed; will look again")

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        await self.pool.disconnect()
