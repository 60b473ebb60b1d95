"""The live route set: one owner, one writer. How does a route change? Here.

:class:`RouteTable` holds the effective config and the route index built from it, and is the only
code that changes them. Every change goes through :meth:`RouteTable.apply` (a new config file) or
the same swap after a store change:

- the config file watcher (``reload.py``) calls ``apply(config, reason)`` with each new file;
- the Redis watcher (``runtime/redis_store.py``) reports that the shared overlay moved;
- the admin API (``api/routes_crud.py``) calls :meth:`create` and :meth:`delete`: one change at a
  time (a lock), 409 for a name in use, 404 for an unknown one, and persist-then-serve: the change
  is kept by the store (the config file, or Redis) before it is served, so a route that could not
  be saved is never served.

The effective route set is always ``store.merge(base)``, where ``base`` is the config file as last
loaded; config, index, gateway keys and the body cap are swapped together in one synchronous step
(readers on the event loop see the old set or the new one, never a mix), so they cannot disagree.
A request keeps the entry it looked up, so requests and streams in flight finish on the route they
started with. The diff of each swap is logged as one line, saying who made the change (a gateway
key's name, the file); under ``--workers N`` one process of the server logs it and the others apply
it at ``debug`` level (``runtime/change_log.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from gateway_server.auth import KeyTable
from gateway_server.breaker import BreakerBoard
from gateway_server.config import GatewayConfig, RouteConfig, parse_route
from gateway_server.config.models import alias_clashes
from gateway_server.errors import InvalidRequestError, RouteExistsError
from gateway_server.limits import served_workers
from gateway_server.registry import RouteEntry, RouteIndex, build_entry
from gateway_server.runtime.change_log import ChangeLog
from gateway_server.runtime.changes import RouteChanges, diff_routes
from gateway_server.runtime.store import FileStore, RouteStore

__all__ = ["RouteTable"]

logger = logging.getLogger("gateway_server.runtime")


class RouteTable:
    """The effective config, its route index, gateway keys and body cap; swapped only here."""

    __slots__ = (
        "auth",
        "base",
        "breakers",
        "changes",
        "config",
        "index",
        "lock",
        "max_request_bytes",
        "on_swap",
        "store",
    )

    def __init__(
        self,
        config: GatewayConfig,
        store: RouteStore | None = None,
        *,
        breakers: BreakerBoard | None = None,
        changes: ChangeLog | None = None,
    ) -> None:
        self.store: RouteStore = store if store is not None else FileStore(config.path)
        # Which process of the server logs a change (one line per change under --workers N).
        self.changes = changes if changes is not None else ChangeLog.from_env()
        self.store.mark = self.changes.mark  # the store marks what it writes, before others see it
        # One breaker per upstream model, kept across every swap so a change keeps what it learnt.
        self.breakers = breakers if breakers is not None else BreakerBoard()
        self.lock = asyncio.Lock()  # one admin change at a time (per process)
        self.base = config  # the config file as last loaded (or the config given)
        self.config = self.store.merge(config)
        self.index = RouteIndex(self.config.routes, self.breakers)
        self.auth = KeyTable.from_config(self.config.auth)
        self.max_request_bytes = self.config.server.max_request_bytes
        # Called with the route names after each swap (the metrics forget deleted routes' series).
        self.on_swap: list[Callable[[list[str]], None]] = []

    # -- reading (the hot path reads ``index`` directly) -----------------------------------------

    def get(self, name: str) -> RouteEntry | None:
        return self.index.get(name)

    def list(self) -> list[RouteEntry]:
        return self.index.list()

    # -- the one swap ------------------------------------------------------------------------------

    def apply(
        self,
        config: GatewayConfig,
        reason: str,
        *,
        quiet: bool = False,
        token: str | None = None,
        changed_by: str = "file",
    ) -> RouteChanges:
        """Serve ``config`` (a validated config file) with the store's run-time changes over it.

        ``token`` (``change_log.content_token`` of the file) tells whether the admin API wrote this
        content, in which case the worker that made the change logged it already."""
        if config is not self.base:
            self.store.rebase(config)
            self.base = config
        return self._swap(reason, changed_by, announce=self._announces(token), quiet=quiet)

    def store_changed(self, reason: str, token: str | None = None) -> RouteChanges:
        """The store's overlay moved by itself (another process changed the shared routes)."""
        return self._swap(reason, "shared-state", announce=self._announces(token))

    def _announces(self, token: str | None) -> bool:
        """Whether this process logs a change it did not make (at ``info``; else ``debug``)."""
        return not self.changes.marked(token) and self.changes.owner()

    def _swap(
        self, reason: str, changed_by: str, *, announce: bool = True, quiet: bool = False
    ) -> RouteChanges:
        config = self.store.merge(self.base)
        changes = diff_routes(self.config.routes, config.routes)
        index = RouteIndex(config.routes, self.breakers, previous=self.index)
        auth = KeyTable.from_config(  # added, removed or rotated gateway keys apply at once
            config.auth, allow_unauthenticated_admin=self.auth.allow_unauthenticated_admin
        )
        # No await between these assignments: readers on the loop see all of them or none.
        self.config, self.index, self.auth = config, index, auth
        self.max_request_bytes = config.server.max_request_bytes
        for callback in self.on_swap:
            callback([entry.name for entry in index.list()])
        level = logging.INFO if announce and (changes or not quiet) else logging.DEBUG
        logger.log(level, "%s: %s", reason, changes.summary(), extra={"changed_by": changed_by})
        return changes

    # -- the admin use cases ---------------------------------------------------------------------

    async def create(self, body: dict[str, Any], *, key: str | None = None) -> RouteEntry:
        """Validate ``body`` as a config file's route, keep it in the store, then serve it.
        ``key``: the name of the gateway key that asked (None: a gateway without keys), logged."""
        self.store.check_writable()
        # ConfigError (400) listing every problem, in the file's words; the run-time rules of
        # trust.py: a key given inline or a credential of the file, and allowed upstream hosts.
        route = parse_route(body, base=self.base)
        workers = served_workers()
        if route.limits and workers > 1 and not self.config.server.shared_state:
            raise InvalidRequestError(
                f"Route '{route.name}' has a 'limit:', and this server runs {workers} workers without "
                f"server.shared_state: each worker would count alone, admitting up to {workers} times "
                "the limit. Set server.shared_state (docs/scale-out.md), or create the route without a limit.",
                param="limit",
            )
        async with self.lock:
            if self.index.get(route.name) is not None:
                raise RouteExistsError(route.name)
            _check_aliases(self.config.routes, route)
            await self.store.create(route, body, in_file=self._in_file(route.name))
            self._swap(f"route '{route.name}' created ({self.store.where}) {_by(key)}", _changed_by(key))
        # Served now, unless the store could not be read back (Redis stopped answering): the
        # watcher will catch up; the caller still gets the route it created.
        return self.index.get(route.name) or build_entry(route, self.breakers)

    async def delete(self, name: str, noun: str = "route", *, key: str | None = None) -> None:
        """Remove ``name`` from the store, then stop serving it (``key``: as for :meth:`create`)."""
        self.store.check_writable()
        async with self.lock:
            served = self.index.get(name) is not None
            await self.store.delete(name, noun, in_file=self._in_file(name), served=served)
            self._swap(f"{noun} '{name}' deleted ({self.store.where}) {_by(key)}", _changed_by(key))

    def _in_file(self, name: str) -> bool:
        return any(route.name == name for route in self.base.routes)

    # -- lifecycle ---------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """For the app's lifespan: the store loads what it holds and watches it."""
        try:
            async with self.store.running(self.store_changed):
                yield
        finally:
            self.changes.close()


def _by(key: str | None) -> str:
    """Who made an admin change, for its log line: the key's *name* (never the key)."""
    return f"by key '{key}'" if key is not None else "by a caller without a key (the gateway has no auth: keys)"


def _changed_by(key: str | None) -> str:
    """The same, as the ``changed_by`` field of a JSON log line."""
    return f"key:{key}" if key is not None else "no-key"


def _check_aliases(routes: list[RouteConfig], route: RouteConfig) -> None:
    """A new route's name or aliases may not be a name another route is already called by."""
    clashes = alias_clashes([*((other.name, other.aliases) for other in routes), (route.name, route.aliases)])
    if clashes:
        raise InvalidRequestError("; ".join(message for _, _, message in clashes), param="aliases")
