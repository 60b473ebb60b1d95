"""The running route set: who owns it, where its changes are kept, and how it changes.

- :mod:`~gateway_server.runtime.table`: :class:`RouteTable`, the one owner and only writer of the
  effective config and the route index (``apply``, ``create``, ``delete``);
- :mod:`~gateway_server.runtime.store`: the :class:`RouteStore` protocol and the file store;
- :mod:`~gateway_server.runtime.redis_store`: the Redis store (``server.shared_state``);
- :mod:`~gateway_server.runtime.overlay`: run-time changes laid over the file's routes;
- :mod:`~gateway_server.runtime.changes`: the diff behind each "routes changed" log line.

The store is chosen once, at start-up; the watchers (``reload.py``, the Redis store) get a
callback into the table, never the table or the app state.
"""

from __future__ import annotations

from gateway_server.runtime.changes import RouteChanges, diff_routes
from gateway_server.runtime.store import FileStore, RouteStore
from gateway_server.runtime.table import RouteTable

__all__ = ["FileStore", "RouteChanges", "RouteStore", "RouteTable", "diff_routes"]
