"""Run the gateway under uvicorn: uvloop + httptools explicitly (SPEC §1), one process or N workers.

The config is validated before anything listens. With one worker the already-validated app is
served directly; with several, uvicorn's supervisor starts workers that each build the app from
``GATEWAYCTL_CONFIG``. SIGTERM/SIGINT stop accepting and let in-flight requests finish for up to
``graceful_timeout`` seconds.
"""

from __future__ import annotations

import logging
import os
import sys

import uvicorn

from gateway_server.app import CONFIG_ENV, create_app
from gateway_server.config import load_config

__all__ = ["run"]

logger = logging.getLogger("gateway_server")


def _event_loop() -> str:
    return "uvloop" if sys.platform != "win32" else "asyncio"


def run(
    config_path: str,
    *,
    host: str = "127.0.0.1",
    port: int = 5000,
    workers: int = 1,
    allow_unauthenticated_admin: bool = False,
    graceful_timeout: float = 30.0,
    access_log: bool = False,
) -> None:
    config = load_config(config_path)  # raises ConfigError listing every problem
    common = {
        "host": host,
        "port": port,
        "loop": _event_loop(),
        "http": "httptools",
        "lifespan": "on",
        "access_log": access_log,
        "timeout_graceful_shutdown": graceful_timeout,
        "server_header": False,
        "log_level": "info",
    }
    if allow_unauthenticated_admin:
        os.environ["GATEWAYCTL_ALLOW_UNAUTHENTICATED_ADMIN"] = "1"
    logger.info("serving %d route(s) from %s on http://%s:%d", len(config.routes), config_path, host, port)
    if workers > 1:
        os.environ[CONFIG_ENV] = os.path.abspath(config_path)
        uvicorn.run("gateway_server.app:create_app_from_env", factory=True, workers=workers, **common)
        return
    uvicorn.Server(uvicorn.Config(create_app(config), **common)).run()
