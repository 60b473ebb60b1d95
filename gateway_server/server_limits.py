"""What one caller may hold of the server: header size and count, time to send a request, connections.

Every limit has a default that a serious deployment can keep, and a ``gatewayctl serve`` option to
change it (``docs/security.md`` lists them). The request body's size is the config's
``server.max_request_bytes`` (1 MiB), enforced on every path: ``api/invocations.py`` on the hot
path, ``api/body_guard.py`` in front of FastAPI.

The limits travel to the HTTP protocol (``http_protocol.py``) as an attribute of uvicorn's
``Config`` (``gateway_limits``), so they reach ``--workers`` processes with the pickled config.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass

__all__ = ["DEFAULT_CONCURRENCY", "DISCONNECT_HOOK", "ServerLimits", "default_concurrency"]

DEFAULT_CONCURRENCY = 1000

# A scope key through which a request handler asks the server's protocol (``http_protocol.py``) to
# be told, by a call, when the caller's connection is lost before the answer is complete; the
# protocol removes the key before calling it. Cheaper on the hot path than a task that waits on
# ``receive()`` for ``http.disconnect``. Under another server nothing calls it.
DISCONNECT_HOOK = "gateway.on_disconnect"


def default_concurrency() -> int:
    """1000, or half the process's open-file limit when that is lower: every proxied request holds
    two descriptors (the caller's socket and the upstream's), and a server that runs out of
    descriptors stops accepting anyone, health checks included."""
    try:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError):  # pragma: no cover - every POSIX system has it
        return DEFAULT_CONCURRENCY
    if soft == resource.RLIM_INFINITY:
        return DEFAULT_CONCURRENCY
    return max(16, min(DEFAULT_CONCURRENCY, soft // 2))


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """The server-side bounds on a caller; the defaults are the documented ones."""

    # The request line and every header together, in bytes: beyond it, 431 and the connection closes.
    max_header_bytes: int = 64 * 1024
    # Header lines in one request: beyond it, 431.
    max_headers: int = 100
    # Seconds from a connection's (or a request's) first byte to the end of its headers. A connection
    # that sends nothing at all is closed after this long too.
    header_timeout: float = 10.0
    # Seconds the whole request body may take to arrive, from the end of its headers: then 408.
    body_timeout: float = 30.0
    # Seconds a kept-alive connection may stay idle between requests (uvicorn's own timer).
    keep_alive_timeout: float = 5.0
    # Open connections and requests in flight: a connection beyond it is answered 503 and closed.
    # None means ``default_concurrency()``.
    limit_concurrency: int | None = None

    def concurrency(self) -> int:
        return self.limit_concurrency if self.limit_concurrency is not None else default_concurrency()
