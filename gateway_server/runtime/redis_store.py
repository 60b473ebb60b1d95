"""Run-time routes in Redis (``server.shared_state``): one overlay for every process that shares it.

The design and its consistency rules are in docs/scale-out.md:

- the config file is the *base* table, the same for every process; Redis holds an *overlay* of
  run-time changes: ``<prefix>:routes`` (hash: name -> the route's JSON exactly as it was given,
  so a credential stays a reference to the file's credential), ``<prefix>:routes:deleted`` (set: names of file routes
  deleted at run time) and ``<prefix>:routes:version`` (a counter bumped by every change);
- a change is one Lua script (check, write, bump), so two processes creating the same name at once
  get one 200 and one 409;
- each process looks at the version every ``poll_interval`` seconds (one ``GET``) and, when it
  moved, reads the overlay in one transaction and has the route table swap (``on_change``):
  effective routes are the file's, minus the deleted names, plus (and overriding) the created ones;
- Redis not answering: start-up fails naming the URL (password masked); at run time a change is
  refused with 503, the table in hand keeps serving, and the watcher logs once and retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson

from gateway_server.config import GatewayConfig, RouteConfig
from gateway_server.errors import (
    InvalidRequestError,
    RouteExistsError,
    RouteNotFoundError,
    SharedStateUnavailableError,
)
from gateway_server.runtime.change_log import version_token
from gateway_server.runtime.overlay import RouteOverlay, parse_overlay
from gateway_server.runtime.store import Mark, OnChange
from gateway_server.shared import SharedState, redacted_url

__all__ = ["RedisStore"]

logger = logging.getLogger("gateway_server.shared")

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


class RedisStore:
    """A :class:`~gateway_server.runtime.store.RouteStore` over the shared Redis."""

    where = "shared state"

    def __init__(self, shared: SharedState) -> None:
        self.shared = shared
        self.overlay = RouteOverlay()
        self.base: GatewayConfig | None = None  # the config file: credentials of created routes
        self._scripts: dict[str, Any] = {}
        self._failing = False
        self.mark: Mark = lambda token: None  # set by the route table (change_log.py)

    def merge(self, base: GatewayConfig) -> GatewayConfig:
        self.base = base
        return self.overlay.merge(base)

    def rebase(self, base: GatewayConfig) -> None:
        self.base = base
        if base.server.shared_state != self.shared.url:
            logger.warning("server.shared_state changed in %s: it applies on restart", base.path)

    def check_writable(self) -> None:
        return None  # Redis is asked at the change itself: 503 when it does not answer

    # -- reading the overlay ---------------------------------------------------------------------

    async def _read(self) -> tuple[int, dict[str, bytes], set[str]]:
        routes, deleted, version = self.shared.keys
        async with self.shared.client.pipeline(transaction=True) as pipe:
            pipe.get(version)
            pipe.hgetall(routes)
            pipe.smembers(deleted)
            raw_version, created, tombstones = await pipe.execute()
        names = {name.decode(): raw for name, raw in created.items()}
        return int(raw_version or 0), names, {name.decode() for name in tombstones}

    async def refresh(
        self, *, force: bool = False, consequence: str = "the route table in hand keeps serving"
    ) -> bool:
        """Read the overlay if its version moved (or ``force``); True if a new one was read."""
        from redis import RedisError

        try:
            if not force:
                raw = await self.shared.client.get(self.shared.keys[2])
                if int(raw or 0) == self.overlay.version:
                    self._recovered()
                    return False
            version, created, deleted = await self._read()
        except (RedisError, OSError) as exc:
            raise self.shared.unreachable(exc, consequence) from None
        self._recovered()
        self.overlay = await asyncio.to_thread(parse_overlay, version, created, deleted, self.base)
        return True

    def _recovered(self) -> None:
        if self._failing:
            self._failing = False
            logger.warning("shared state %s answers again", redacted_url(self.shared.url))

    # -- changes -----------------------------------------------------------------------------------

    async def create(self, route: RouteConfig, body: dict[str, Any], *, in_file: bool) -> None:
        # Only keys of credentials (held by the file, not Redis) are accepted: a key given inline
        # would be stored in Redis in clear, and a run-time route cannot use $ENV or files.
        literal = [
            secret
            for model in route.all_models
            if model.credentials is None and model.config is not None
            for secret in model.config.secrets()
            if not secret.is_reference
        ]
        if literal:
            raise InvalidRequestError(
                f"Route '{route.name}' was not created: with server.shared_state, created routes are "
                "stored in Redis as given, so a key cannot be given in the route itself; name a "
                "credential of the config file's credentials: section instead (model.credentials)."
            )
        if not await self._change(_CREATE, route.name, orjson.dumps(body), "1" if in_file else "0"):
            raise RouteExistsError(route.name)
        await self._catch_up()

    async def delete(self, name: str, noun: str, *, in_file: bool, served: bool) -> None:
        # ``served`` is this process's view; another process may have created the route just now.
        if not await self._change(_DELETE, name, "1" if in_file else "0"):
            raise RouteNotFoundError(name, noun=noun)
        await self._catch_up()

    async def _change(self, script: str, *args: Any) -> int:
        from redis import RedisError

        client = self.shared.client
        try:
            if script not in self._scripts:
                self._scripts[script] = client.register_script(script)
            version = int(
                await self._scripts[script](keys=list(self.shared.keys), args=list(args), client=client)
            )
        except (RedisError, OSError) as exc:
            logger.error("%s", self.shared.unreachable(exc, "the change was not made"))
            raise SharedStateUnavailableError(
                "The change was not made: the gateway's shared state (Redis) did not answer. Retry shortly."
            ) from None
        if version:  # this process logs the change: the others of the server stay quiet about it
            self.mark(version_token(version))
        return version

    async def _catch_up(self) -> None:
        """Read-your-writes: this process serves the change before answering (others within a poll)."""
        try:
            await self.refresh(force=True)
        except SharedStateUnavailableError as exc:  # made, but not read back: the watcher will
            logger.warning("%s", exc)

    # -- lifecycle ---------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def running(self, on_change: OnChange) -> AsyncIterator[None]:
        """Load the overlay (or fail start-up), then watch it; closes the Redis pool at the end."""
        try:
            await self.refresh(force=True, consequence="the gateway cannot start")
        except SharedStateUnavailableError:
            await self.shared.close()
            raise
        version = self.overlay.version
        on_change(f"shared routes at version {version}", version_token(version))
        task = asyncio.create_task(self._watch(on_change), name="gatewayctl-shared-routes")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await self.shared.close()

    async def _watch(self, on_change: OnChange) -> None:
        interval = self.shared.poll_interval
        while True:
            await asyncio.sleep(interval)
            try:
                if await self.refresh():
                    version = self.overlay.version
                    on_change(
                        f"shared routes at version {version} (changed through another server)",
                        version_token(version),
                    )
            except SharedStateUnavailableError as exc:
                if not self._failing:
                    self._failing = True
                    logger.warning("%s; will look again every %g s", exc, interval)
            except Exception:  # the process edge of a background task: log, keep watching
                logger.exception("shared route watcher failed; will look again")
