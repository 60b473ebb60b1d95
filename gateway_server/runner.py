"""Run the gateway under uvicorn: uvloop + httptools explicitly, one process or N workers.

The config is validated before anything listens, the address is bound before the "serving"
line is printed (``listen.py``: a port in use is one clear error), and the Redis of ``server.shared_state`` (if
any) must answer a PING. With one worker the already-validated app is
served directly; with several, uvicorn's supervisor starts workers that each build the app from
``GATEWAYCTL_CONFIG``. SIGTERM/SIGINT stop accepting and let in-flight requests finish for up to
``graceful_timeout`` seconds.
"""

from __future__ import annotations

import logging
import logging.config
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from gateway_server import logs
from gateway_server.app import CONFIG_ENV, RELOAD_INTERVAL_ENV, create_app
from gateway_server.auth import ALLOW_UNAUTHENTICATED_ADMIN_ENV
from gateway_server.config import load_config
from gateway_server.http_protocol import CoalescingHttpToolsProtocol
from gateway_server.limits import WORKERS_ENV, check_workers
from gateway_server.listen import bind, display_address
from gateway_server.metrics import STARTED_ENV
from gateway_server.metrics_store import METRICS_DIR_ENV
from gateway_server.reload import RELOAD_INTERVAL
from gateway_server.server_limits import ServerLimits
from gateway_server.shared import check_reachable

__all__ = ["run"]

logger = logging.getLogger("gateway_server")


def _event_loop() -> str:
    return "uvloop" if sys.platform != "win32" else "asyncio"


def run(  # noqa: PLR0913 - one parameter per `serve` option
    config_path: str,
    *,
    host: str = "127.0.0.1",
    port: int = 5000,
    workers: int = 1,
    allow_unauthenticated_admin: bool = False,
    graceful_timeout: float = 30.0,
    access_log: bool = True,
    forwarded_allow_ips: str = "",
    log_level: str = "info",
    log_format: str = "text",
    limits: ServerLimits | None = None,
) -> None:
    """Validate ``config_path``, then serve it until SIGTERM/SIGINT; returns (exit 0) once drained.

    Every serving process watches the file and hot-reloads it every ``GATEWAYCTL_RELOAD_INTERVAL``
    seconds (default 1; 0 turns that off); see ``gateway_server/reload.py``. ``forwarded_allow_ips``:
    the proxies whose ``X-Forwarded-For`` gives the client address (empty: nobody's, the default).
    ``limits`` bounds what a caller can hold (header size, timeouts, connections; ``server_limits.py``).
    """
    limits = limits or ServerLimits()
    config = load_config(config_path)  # raises ConfigError listing every problem
    check_workers(config, workers)  # rate limits are counted per process, unless shared
    if config.server.shared_state:  # Redis down: one clear error naming the URL, before any worker
        check_reachable(config.server.shared_state)
    reload_interval = float(os.environ.get(RELOAD_INTERVAL_ENV, RELOAD_INTERVAL))
    log_config = logs.log_config(log_level, log_format)
    logging.config.dictConfig(log_config)  # now, so the lines below print too; uvicorn applies it again
    common: dict[str, Any] = {
        "host": host,
        "port": port,
        "loop": _event_loop(),
        "http": CoalescingHttpToolsProtocol,  # uvicorn's httptools protocol, one write per turn
        "lifespan": "on",
        "ws": "none",  # no websocket paths: uvicorn then does not import the websockets package
        "access_log": False,  # the gateway writes its own access line per invocation (logs.py)
        "timeout_graceful_shutdown": graceful_timeout,
        "timeout_keep_alive": limits.keep_alive_timeout,
        "server_header": False,
        "log_level": log_level,
        "log_config": log_config,
        # X-Forwarded-For is believed only from the proxies named here; uvicorn's default would
        # trust 127.0.0.1, so that a local proxy's clients could choose their client_ip.
        "proxy_headers": bool(forwarded_allow_ips.strip()),
        "forwarded_allow_ips": forwarded_allow_ips.strip(),
    }
    if allow_unauthenticated_admin:
        _warn_unauthenticated_admin(has_keys=config.auth is not None)
    sock = bind(host, port)  # raises ListenError (its own exit code) before anything is announced
    sock.listen(2048)  # uvicorn's backlog: connections from now on wait for the server, not refused
    bound_port = sock.getsockname()[1]
    logger.info(
        "serving %d route(s) from %s on http://%s",
        len(config.routes),
        config_path,
        display_address(host, bound_port),
    )
    with sock:  # closed however serving ends (uvicorn leaves it open after a failed start-up)
        if workers > 1:
            os.environ[CONFIG_ENV] = os.path.abspath(config_path)
            # The worker factory's only channel; a single process gets the flag as an attribute below.
            os.environ[ALLOW_UNAUTHENTICATED_ADMIN_ENV] = "1" if allow_unauthenticated_admin else "0"
            os.environ.update(
                {
                    logs.LOG_LEVEL_ENV: log_level,
                    logs.LOG_FORMAT_ENV: log_format,
                    logs.ACCESS_LOG_ENV: "1" if access_log else "0",
                    WORKERS_ENV: str(workers),  # a reloaded file is checked against it (limits.py)
                    STARTED_ENV: repr(time.time()),  # one uptime for the whole server
                }
            )
            # Every worker keeps its metrics in a file of this directory; any worker's scrape adds
            # them all up (metrics_store.py). Made fresh for this server, removed when it stops.
            metrics_dir = tempfile.mkdtemp(prefix="gatewayctl-metrics-")
            os.environ[METRICS_DIR_ENV] = metrics_dir
            try:
                config_ = uvicorn.Config(
                    "gateway_server.app:create_app_from_env", factory=True, workers=workers, **common
                )
                config_.gateway_limits = limits  # type: ignore[attr-defined]  # pickled into every worker
                _supervise(config_, sock)
            finally:
                shutil.rmtree(metrics_dir, ignore_errors=True)
            return
        app = create_app(config, reload_interval=reload_interval or None, freeze_heap=True)
        app.state.auth.allow_unauthenticated_admin = allow_unauthenticated_admin
        if access_log and logging.getLevelName(log_level.upper()) <= logging.INFO:
            app.state.access_log = logs.AccessLog(log_format)
        single = uvicorn.Config(app, **common)
        single.gateway_limits = limits  # type: ignore[attr-defined]  # read by CoalescingHttpToolsProtocol
        with _signals_end_cleanly():
            uvicorn.Server(single).run(sockets=[sock])


def _supervise(config: uvicorn.Config, sock: socket.socket) -> None:
    """Run ``config.workers`` worker processes on one listening socket, as ``uvicorn.run`` does,
    except that the parent closes its copy of the socket as soon as shutdown begins.

    Under uvicorn's own supervisor the parent keeps the socket open until every worker has drained,
    so for up to ``graceful_timeout`` seconds the kernel completes the handshake of new connections
    that nobody will ever accept, and resets them when the parent exits. Closed at once, the socket
    stops listening when the last worker closes its copy (each does so first thing on SIGTERM): new
    connections are refused, and a client or load balancer can go elsewhere straight away.
    """
    from uvicorn.supervisors.multiprocess import Multiprocess  # the parent of N workers only

    class Supervisor(Multiprocess):
        def terminate_all(self) -> None:  # called once, when the parent stops; forwards SIGTERM
            for sock in self.sockets:
                sock.close()
            super().terminate_all()

    Supervisor(config, sockets=[sock]).run()


@contextmanager
def _signals_end_cleanly() -> Iterator[None]:
    """Make a drained shutdown exit 0.

    After its graceful shutdown uvicorn restores the previous SIGTERM/SIGINT handlers and raises
    the signal again, which under the default handlers kills the process (-15) or raises
    KeyboardInterrupt. These handlers are what it restores: they ignore that replay.
    """
    handled = (signal.SIGTERM, signal.SIGINT)
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in handled}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _warn_unauthenticated_admin(*, has_keys: bool) -> None:
    # Printed, not only logged: the operator must see it whatever the logging setup.
    if has_keys:
        message = (
            "WARNING: --allow-unauthenticated-admin has no effect: the config has an 'auth:' section, "
            "so route changes need a key with the 'admin' scope."
        )
    else:
        message = (
            "WARNING: --allow-unauthenticated-admin: anyone who can reach this server can create and "
            "delete routes (and so rewrite the config file). Use it for local development only."
        )
    print(message, file=sys.stderr, flush=True)
