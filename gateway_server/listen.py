"""The listening socket of ``gatewayctl serve``, bound before anything is announced or started.

Binding here (not inside uvicorn) gives one clear error for an address that cannot be used (port
in use, unknown host, no permission) with its own exit code, instead of uvicorn's log line and
``sys.exit(3)``, the exit code that means "invalid configuration". It also lets the "serving ... on
URL" line name the port really bound (``--port 0`` picks a free one).
"""

from __future__ import annotations

import errno
import socket

from gateway_server.errors import ListenError

__all__ = ["bind", "display_address"]

_REASONS = {
    errno.EADDRINUSE: "the port is already in use (is another gateway running?)",
    errno.EADDRNOTAVAIL: "this machine has no such address",
    errno.EACCES: "permission denied (ports below 1024 need privileges)",
}


def display_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def bind(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (not yet listening), inheritable by worker processes."""
    address = display_address(host, port)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ListenError(
            f"cannot listen on {address}: unknown host {host!r} ({reason}); pass an IP address or "
            "a name this machine resolves to --host",
            address=address,
        ) from exc
    family, kind, proto, _, sockaddr = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: restart at once
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(sockaddr)
    except OSError as exc:
        sock.close()
        reason = _REASONS.get(exc.errno or 0) or exc.strerror or str(exc)
        raise ListenError(f"cannot listen on {address}: {reason}", address=address) from exc
    sock.set_inheritable(True)
    return sock
