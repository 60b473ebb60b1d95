"""Where run-time route changes are kept: the ``RouteStore`` protocol and the file store.

A store is chosen once, at start-up (``GatewayState.from_config``): the config file
(:class:`FileStore`) by default, Redis (:class:`~gateway_server.runtime.redis_store.RedisStore`)
with ``server.shared_state``. The route table (``runtime/table.py``) is the only caller; a store
does I/O and keeps an overlay of the changes it made, and the table computes the effective route
set as ``store.merge(file config)`` and swaps it in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from gateway_server.config import GatewayConfig, RouteConfig
from gateway_server.errors import ConfigNotPersistableError, GatewayError, RouteNotFoundError
from gateway_server.runtime.change_log import content_token

__all__ = ["FileStore", "Mark", "OnChange", "RouteStore"]

logger = logging.getLogger("gateway_server.runtime")

# Called with the reason (and the change's mark, runtime/change_log.py) when a store's overlay
# moved by itself.
OnChange = Callable[..., object]
Mark = Callable[[str], None]  # what a store calls with the mark of each change it writes


def _no_mark(token: str) -> None:
    pass


class RouteStore(Protocol):
    """What the route table needs from where run-time changes are kept."""

    where: str  # for log lines: "saved to gateway.yaml", "shared state"
    # Set by the route table: called with the mark of each change before others can see it
    # (change_log.py), so that the server logs the change once.
    mark: Mark

    def merge(self, base: GatewayConfig) -> GatewayConfig:
        """``base`` (the config file's routes) with this store's run-time changes laid over it."""
        ...

    def rebase(self, base: GatewayConfig) -> None:
        """The config file was loaded again (``base`` is its new content)."""
        ...

    def check_writable(self) -> None:
        """Raise the error that refuses every change, if changes cannot be kept at all."""
        ...

    async def create(self, route: RouteConfig, body: dict[str, Any], *, in_file: bool) -> None:
        """Keep ``route`` (validated; ``body`` as the caller gave it); RouteExistsError if taken."""
        ...

    async def delete(self, name: str, noun: str, *, in_file: bool, served: bool) -> None:
        """Remove ``name``; RouteNotFoundError if there is no such route."""
        ...

    def running(self, on_change: OnChange) -> AbstractAsyncContextManager[None]:
        """For the app's lifespan: load what the store holds, then watch it (``on_change``)."""
        ...


class FileStore:
    """Changes are written to the config file (``persist.py``: round-trip YAML, atomic replace),
    then served. Until the file is next loaded, the changes are also kept here as an overlay, so
    the served set equals the file's content whether or not hot reload is on.

    With no file (a config built in code), every change is refused with 409: a created route
    would be lost on restart."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.where = f"saved to {path}"
        self.mark: Mark = _no_mark
        self._created: dict[str, RouteConfig] = {}  # in creation order: the order the file has
        self._deleted: set[str] = set()

    def merge(self, base: GatewayConfig) -> GatewayConfig:
        if not self._created and not self._deleted:
            return base
        hidden = self._deleted | self._created.keys()
        routes = [route for route in base.routes if route.name not in hidden]
        routes.extend(self._created.values())
        return base.model_copy(update={"routes": routes})  # keeps the file's path and warnings

    def rebase(self, base: GatewayConfig) -> None:
        # The file holds every change written so far: it is the whole truth again.
        self._created.clear()
        self._deleted.clear()

    def check_writable(self) -> None:
        if self.path is None:
            raise ConfigNotPersistableError()

    # persist.py (and ruamel.yaml) is imported on the first change: a gateway that only serves never
    # loads it (start-up time and memory, tests/server/test_app.py).

    async def create(self, route: RouteConfig, body: dict[str, Any], *, in_file: bool) -> None:
        from gateway_server.persist import add_route

        # Written as given, so a credential stays a reference to the file's credential.
        await self._persist(add_route, body)
        self._deleted.discard(route.name)
        self._created[route.name] = route

    async def delete(self, name: str, noun: str, *, in_file: bool, served: bool) -> None:
        from gateway_server.persist import remove_route

        if not served:
            raise RouteNotFoundError(name, noun=noun)
        try:
            await self._persist(remove_route, name)
        except RouteNotFoundError:  # the file changed under us; the served set follows the file
            logger.warning(
                "route '%s' was no longer in %s; removing it from the running table", name, self.path
            )
        self._created.pop(name, None)
        self._deleted.add(name)

    async def _persist(self, change: Callable[[str, Any, Callable[[str], None]], None], arg: Any) -> None:
        self.check_writable()
        assert self.path is not None
        try:  # the new content is marked before it replaces the file (change_log.py)
            await asyncio.to_thread(change, self.path, arg, lambda text: self.mark(content_token(text)))
        except OSError as exc:
            logger.error("could not save a route change to %s: %s", self.path, exc.strerror)
            raise GatewayError(
                f"The change was not made: the config file could not be written ({exc.strerror})."
            ) from None

    @contextlib.asynccontextmanager
    async def running(self, on_change: OnChange) -> AsyncIterator[None]:
        yield  # the config file is watched by reload.py, which calls RouteTable.apply
