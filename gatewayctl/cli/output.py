"""How commands print: rich tables for people on stdout, diagnostics on stderr, JSON for scripts.

``--output json`` prints one envelope ``{"version": 1, "data": ...}`` on stdout (one compact
envelope per line when streaming); the version changes only when the shape of ``data`` does.
Text that came from a model or a server is printed without rich markup interpretation.
"""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import typer

from gateway_server.errors import ConfigError, GatewayError
from gateway_server.routes import Route
from gatewayctl._common import GatewayTimeoutError, GatewayUnreachableError
from gatewayctl._uri import GatewayUriError

if TYPE_CHECKING:
    from rich.console import Console

# rich is imported when something is printed, not with the module: `gatewayctl serve` prints
# nothing on success, and importing rich is ~30 ms of its start-up.

__all__ = [
    "JSON_ENVELOPE_VERSION",
    "OutputFormat",
    "emit_json",
    "error_data",
    "json_requested",
    "print_renderable",
    "print_route",
    "print_routes",
    "print_table",
    "print_text",
    "report_error",
    "report_usage_error",
    "route_data",
    "say",
    "warn",
]

JSON_ENVELOPE_VERSION = 1


class OutputFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


def _stdout() -> Console:
    from rich.console import Console

    # Built per call so the console follows the current sys.stdout (tests swap it).
    return Console(highlight=False, soft_wrap=True)


def _stderr() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def escape(text: str) -> str:
    """``text`` with rich markup escaped."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def emit_json(data: Any, *, compact: bool = False) -> None:
    """Print ``data`` in the versioned envelope on stdout."""
    envelope = {"version": JSON_ENVELOPE_VERSION, "data": data}
    typer.echo(json.dumps(envelope, separators=(",", ":")) if compact else json.dumps(envelope, indent=2))


def say(message: str) -> None:
    """A diagnostic for people (stderr), markup-free."""
    _stderr().print(message, markup=False)


def warn(message: str) -> None:
    _stderr().print(f"[yellow]warning:[/yellow] {escape(message)}")


def route_data(route: Route) -> dict[str, Any]:
    data = route.model_dump(mode="json")
    if data.get("aliases") is None:
        data.pop("aliases", None)  # only routes with aliases show the key
    return data


def print_routes(routes: list[Route]) -> None:
    if not routes:
        say("The gateway has no routes.")
        return
    from rich.table import Table

    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("NAME", "TYPE", "PROVIDER", "MODEL"):  # the URL is in `routes get` and the JSON
        table.add_column(column, overflow="fold")
    for route in routes:
        table.add_row(
            escape(route.name),
            route.route_type.value,
            escape(route.model.provider),
            escape(route.model.name or "-"),
        )
    _stdout().print(table)


def print_table(table: Any) -> None:
    """A rich table to stdout (the commands build their own columns)."""
    _stdout().print(table)


def print_route(route: Route) -> None:
    from rich.table import Table

    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    rows = [
        ("name", route.name),
        ("route type", route.route_type.value),
        ("provider", route.model.provider),
        ("model", route.model.name or "-"),
        ("url", route.route_url),
    ]
    if route.limit is not None:
        rows.append(("limit", f"{route.limit.calls} per {route.limit.renewal_period}"))
    if route.aliases:
        rows.append(("aliases", ", ".join(route.aliases)))
    for key, value in rows:
        table.add_row(key, escape(value))
    _stdout().print(table)


def _hint(error: BaseException) -> str | None:
    if isinstance(error, GatewayTimeoutError):  # it answered nothing in time: running, maybe busy
        return "A slow route may need a longer --timeout."
    if isinstance(error, GatewayUnreachableError):
        return "Is the gateway running at that address? Set it with --gateway-uri or MLFLOW_GATEWAY_URI."
    if isinstance(error, GatewayUriError) and "--gateway-uri" not in error.message:
        return "Pass --gateway-uri URI or set MLFLOW_GATEWAY_URI."
    if isinstance(error, GatewayError) and error.status_code == 401:
        # Only a gateway with keys answers 401; a 403 explains itself (missing scope, or no auth:
        # section at all, where no key could help).
        return "Pass a gateway key with --api-key or GATEWAYCTL_API_KEY."
    if isinstance(error, GatewayError) and error.status_code == 429 and error.retry_after:
        if "retry in" in error.message.lower():  # the gateway's own 429 already says when
            return None
        return f"Retry after {error.retry_after:g} s."  # an upstream's 429 keeps its hint
    return None


def json_requested(argv: list[str]) -> bool:
    """True when the command line asks for ``-o json`` / ``--output json`` (errors follow suit)."""
    for index, arg in enumerate(argv):
        if arg == "--":
            break
        if arg in ("-o", "--output") and index + 1 < len(argv):
            if argv[index + 1].lower() == "json":
                return True
        elif arg.lower() in ("--output=json", "-ojson", "-o=json"):
            return True
    return False


def _emit_error(error: dict[str, Any]) -> None:
    sys.stderr.write(json.dumps({"version": JSON_ENVELOPE_VERSION, "error": error}) + "\n")
    sys.stderr.flush()


def error_data(error: BaseException) -> dict[str, Any]:
    """The ``error`` object of a JSON error report (what ``-o json`` prints on stderr)."""
    from gatewayctl.cli.exit_codes import exit_code_for

    data: dict[str, Any] = {"exit_code": int(exit_code_for(error))}
    if isinstance(error, GatewayError):
        data.update(type=error.error_type, message=error.message, status=error.status_code)
        if error.retry_after is not None:
            data["retry_after"] = error.retry_after
        if isinstance(error, ConfigError):
            data["issues"] = [issue.to_dict() for issue in error.issues]
    else:
        data.update(type="unexpected_error", message=f"unexpected {type(error).__name__}: {error}")
    hint = _hint(error)
    if hint:
        data["hint"] = hint
    return data


def report_usage_error(error: Any) -> None:
    """A click usage error (bad option, missing argument) as a JSON report on stderr."""
    message = error.format_message() if hasattr(error, "format_message") else str(error)
    _emit_error({"exit_code": int(error.exit_code), "type": "usage_error", "message": message})


def report_error(error: BaseException, *, debug: bool, as_json: bool = False) -> None:
    """Tell people on stderr why a command failed; the traceback only with ``debug``.

    With ``as_json`` the report is one JSON line on stderr (``{"version": 1, "error": {...}}``
    with ``type``, ``message``, ``exit_code`` and, when known, ``status``, ``retry_after``,
    ``hint`` and config ``issues``), for scripts that asked for ``-o json``.
    """
    console = _stderr()
    if debug:
        console.print_exception(show_locals=False)
    if as_json:
        _emit_error(error_data(error))
        return
    if isinstance(error, ConfigError):
        for issue in error.issues:
            # An issue rebuilt from a server's answer has no file: drop ConfigIssue's "<config>" stand-in.
            text = str(issue) if issue.path is not None else str(issue).removeprefix("<config>: ")
            console.print(text, markup=False)
        count = len(error.issues)
        console.print(
            f"[bold red]error:[/bold red] invalid configuration ({count} problem{'s' * (count != 1)})"
        )
        return
    if isinstance(error, GatewayError):
        console.print(f"[bold red]error:[/bold red] {escape(error.message)}")
    else:
        console.print(f"[bold red]error:[/bold red] unexpected {type(error).__name__}: {escape(str(error))}")
        if not debug:
            console.print("Run with --debug for the traceback.")
    hint = _hint(error)
    if hint:
        console.print(hint, markup=False)


def print_renderable(renderable: Any) -> None:
    """A rich table or panel on stdout."""
    _stdout().print(renderable)


def print_text(text: str, *, end: str = "\n") -> None:
    """Model output, verbatim (no markup, no wrapping), flushed so streamed tokens show at once."""
    sys.stdout.write(text + end)
    sys.stdout.flush()
