"""``gatewayctl serve CONFIG``: validate the config, then run the gateway server until stopped.

The server stack (fastapi, uvicorn) is imported only here, when the command runs. Options are
passed to ``gateway_server.runner.run`` by name: a new option is one parameter here and one
keyword there.
"""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from gatewayctl.cli import output
from gatewayctl.cli.exit_codes import ExitCode

__all__ = ["CONFIG_ENV", "DEFAULT_HOST", "DEFAULT_PORT", "LogFormat", "LogLevel", "serve"]

CONFIG_ENV = "MLFLOW_GATEWAY_CONFIG"  # MLflow's variable for `mlflow gateway start --config-path`
DEFAULT_HOST = "127.0.0.1"  # MLflow's `gateway start` defaults: local only, port 5000
DEFAULT_PORT = 5000


def _config_file(config: Path | None, config_path: Path | None) -> Path:
    """The config file: the argument, else --config-path, else MLFLOW_GATEWAY_CONFIG."""
    if config is not None and config_path is not None and config != config_path:
        raise typer.BadParameter(
            f"CONFIG {str(config)!r} and --config-path {str(config_path)!r} differ; give one",
            param_hint="CONFIG",
        )
    chosen = config or config_path
    source = "CONFIG"
    if chosen is None and os.environ.get(CONFIG_ENV):
        chosen, source = Path(os.environ[CONFIG_ENV]), CONFIG_ENV
    if chosen is None:
        raise typer.BadParameter(
            f"give the config file as CONFIG or --config-path, or set {CONFIG_ENV}", param_hint="CONFIG"
        )
    if not chosen.is_file():
        why = "is a directory" if chosen.is_dir() else "does not exist"
        raise typer.BadParameter(f"file {str(chosen)!r} {why}", param_hint=source)
    return chosen


class LogLevel(StrEnum):  # gateway_server.logs.LOG_LEVELS (not imported: the CLI starts fast)
    debug = "debug"
    info = "info"
    warning = "warning"
    error = "error"
    critical = "critical"


class LogFormat(StrEnum):  # gateway_server.logs.LOG_FORMATS
    text = "text"
    json = "json"


def serve(  # noqa: PLR0913 - one parameter per documented option
    config: Annotated[
        Path | None,
        typer.Argument(
            metavar="CONFIG", help="Config file (YAML); or --config-path, or MLFLOW_GATEWAY_CONFIG."
        ),
    ] = None,
    config_path: Annotated[
        Path | None,
        typer.Option(
            "--config-path", metavar="FILE", help="Config file, as MLflow spells it (same as CONFIG)."
        ),
    ] = None,
    host: Annotated[
        str,
        typer.Option("--host", metavar="ADDRESS", help="Address to listen on (0.0.0.0: every interface)."),
    ] = DEFAULT_HOST,
    port: Annotated[
        int,
        typer.Option("--port", metavar="PORT", min=0, max=65535, help="Port to listen on (0: any free one)."),
    ] = DEFAULT_PORT,
    workers: Annotated[int, typer.Option("--workers", metavar="N", min=1, help="Worker processes.")] = 1,
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
            "--graceful-timeout",
            metavar="SECONDS",
            min=0,
            help="Seconds in-flight requests get to finish on shutdown.",
        ),
    ] = 30.0,
    check: Annotated[
        bool, typer.Option("--check", help="Validate the config and exit without serving.")
    ] = False,
    access_log: Annotated[
        bool,
        typer.Option(
            "--access-log/--no-access-log",
            help="One line per invocation: request id, route, status, times, tokens, key name, model.",
        ),
    ] = True,
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
    log_level: Annotated[
        LogLevel, typer.Option("--log-level", case_sensitive=False, help="Lowest level logged.")
    ] = LogLevel.info,
    log_format: Annotated[
        LogFormat, typer.Option("--log-format", case_sensitive=False, help="Log lines as text or JSON.")
    ] = LogFormat.text,
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

    An invalid config prints every problem and exits 3; --check stops after validating. An
    address that cannot be used (port in use, unknown --host) exits 7 with an error naming it.

    Examples:

    \b
      gatewayctl serve gateway.yaml
      gatewayctl serve --config-path gateway.yaml --host 0.0.0.0 --port 8080
      MLFLOW_GATEWAY_CONFIG=gateway.yaml gatewayctl serve --workers 4
      gatewayctl serve gateway.yaml --check
    """
    path = _config_file(config, config_path)
    if check:
        from gateway_server.config import load_config

        loaded = load_config(str(path))
        for warning in loaded.warnings:
            output.warn(str(warning))
        count = len(loaded.routes)
        output.say(f"{path}: OK ({count} route{'s' * (count != 1)}); not serving (--check).")
        return

    from gateway_server.runner import run
    from gateway_server.server_limits import ServerLimits

    try:
        run(
            str(path),
            host=host,
            port=port,
            workers=workers,
            allow_unauthenticated_admin=allow_unauthenticated_admin,
            graceful_timeout=graceful_timeout,
            access_log=access_log,
            forwarded_allow_ips=forwarded_allow_ips,
            log_level=log_level.value,
            log_format=log_format.value,
            limits=ServerLimits(
                max_header_bytes=max_header_bytes,
                max_headers=max_headers,
                header_timeout=header_timeout,
                body_timeout=body_timeout,
                keep_alive_timeout=keep_alive_timeout,
                limit_concurrency=limit_concurrency,
            ),
        )
    except SystemExit as exc:
        # uvicorn ends a failed start-up with sys.exit(3), and 3 is our "invalid configuration";
        # its reason is already in the log above. Report it as what it is: a failure (1).
        if exc.code in (0, None):
            raise
        output.say(f"error: the server stopped while starting (uvicorn exit status {exc.code}); see above")
        raise typer.Exit(ExitCode.FAILURE) from None
