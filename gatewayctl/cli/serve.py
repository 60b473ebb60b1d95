"""``gatewayctl serve CONFIG``: validate the config, then run the gateway server until stopped.

The server stack (fastapi, uvicorn) is imported only here, when the command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gatewayctl.cli import output

__all__ = ["serve"]


def serve(  # noqa: PLR0913 - one parameter per documented option
    config: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, metavar="CONFIG", help="Config file (YAML).")
    ],
    host: Annotated[str, typer.Option("--host", help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port to bind.")] = 5000,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Worker processes.")] = 1,
    allow_unauthenticated_admin: Annotated[
        bool,
        typer.Option(
            "--allow-unauthenticated-admin",
            help="Allow creating and deleting routes without an admin key (local development only).",
        ),
    ] = False,
    graceful_timeout: Annotated[
        float,
        typer.Option(
            "--graceful-timeout", min=0, help="Seconds in-flight requests get to finish on shutdown."
        ),
    ] = 30.0,
    check: Annotated[
        bool, typer.Option("--check", help="Validate the config and exit without serving.")
    ] = False,
    access_log: Annotated[
        bool,
        typer.Option(
            "--access-log", help="Log one line per request (off by default: it costs CPU on every call)."
        ),
    ] = False,
    forwarded_allow_ips: Annotated[
        str,
        typer.Option(
            "--forwarded-allow-ips",
            envvar="GATEWAYCTL_FORWARDED_ALLOW_IPS",
            metavar="ADDRESSES",
            help="Comma-separated proxy addresses or networks whose X-Forwarded-For/-Proto are believed "
            "(the client address of client_ip limits); '*' trusts every peer. Default: nobody.",
        ),
    ] = "",
    max_header_bytes: Annotated[
        int,
        typer.Option(
            "--max-header-bytes", min=1024, help="Largest request line plus headers, in bytes (431 beyond)."
        ),
    ] = 65536,
    max_headers: Annotated[
        int, typer.Option("--max-headers", min=1, help="Most header lines in one request (431 beyond).")
    ] = 100,
    header_timeout: Annotated[
        float,
        typer.Option("--header-timeout", min=0.1, help="Seconds a caller has to send a request's headers."),
    ] = 10.0,
    body_timeout: Annotated[
        float,
        typer.Option(
            "--body-timeout", min=0.1, help="Seconds a request body may take to arrive (408 beyond)."
        ),
    ] = 30.0,
    keep_alive_timeout: Annotated[
        float,
        typer.Option(
            "--keep-alive-timeout", min=0.1, help="Seconds an idle kept-alive connection stays open."
        ),
    ] = 5.0,
    limit_concurrency: Annotated[
        int | None,
        typer.Option(
            "--limit-concurrency",
            min=1,
            show_default="1000, or half the open-file limit if lower",
            help="Most connections and requests in flight per process (503 beyond).",
        ),
    ] = None,
) -> None:
    """Run the gateway: validate CONFIG, then serve it until stopped (SIGTERM or Ctrl-C).

    An invalid config prints every problem and exits 3; --check stops after validating.
    """
    if check:
        from gateway_server.config import load_config

        loaded = load_config(str(config))
        for warning in loaded.warnings:
            output.warn(str(warning))
        count = len(loaded.routes)
        output.say(f"{config}: OK ({count} route{'s' * (count != 1)}); not serving (--check).")
        return

    from gateway_server.runner import run
    from gateway_server.server_limits import ServerLimits

    run(
        str(config),
        host=host,
        port=port,
        workers=workers,
        allow_unauthenticated_admin=allow_unauthenticated_admin,
        graceful_timeout=graceful_timeout,
        access_log=access_log,
        forwarded_allow_ips=forwarded_allow_ips,
        limits=ServerLimits(
            max_header_bytes=max_header_bytes,
            max_headers=max_headers,
            header_timeout=header_timeout,
            body_timeout=body_timeout,
            keep_alive_timeout=keep_alive_timeout,
            limit_concurrency=limit_concurrency,
        ),
    )
