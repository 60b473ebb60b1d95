"""Exit codes of ``gatewayctl`` and the one mapping from errors to them (documented in ``--help``)."""

from __future__ import annotations

from enum import IntEnum

from gateway_server.errors import ConfigError, GatewayError, ListenError
from gatewayctl._common import GatewayUnreachableError
from gatewayctl._uri import GatewayUriError

__all__ = ["ExitCode", "exit_code_for", "help_epilog", "http_status_to_exit_code"]


class ExitCode(IntEnum):
    OK = 0
    FAILURE = 1
    USAGE = 2
    INVALID_CONFIG = 3
    GATEWAY_CLIENT_ERROR = 4
    GATEWAY_SERVER_ERROR = 5
    UNREACHABLE = 6
    CANNOT_LISTEN = 7


_MEANINGS = {
    ExitCode.OK: "success",
    ExitCode.FAILURE: "failure (unexpected error, aborted, or the server stopped while starting)",
    ExitCode.USAGE: "usage error (bad option or argument, no gateway URI, no config file)",
    ExitCode.INVALID_CONFIG: "invalid configuration (file or route definition)",
    ExitCode.GATEWAY_CLIENT_ERROR: "the gateway refused the request (HTTP 4xx)",
    ExitCode.GATEWAY_SERVER_ERROR: "the gateway or its upstream provider failed (HTTP 5xx)",
    ExitCode.UNREACHABLE: "the gateway could not be reached or did not answer in time",
    ExitCode.CANNOT_LISTEN: "serve could not listen on --host/--port (port in use, unknown address)",
}


def http_status_to_exit_code(status: int) -> ExitCode:
    if 400 <= status < 500:
        return ExitCode.GATEWAY_CLIENT_ERROR
    if 500 <= status < 600:
        return ExitCode.GATEWAY_SERVER_ERROR
    return ExitCode.FAILURE


def exit_code_for(error: BaseException) -> ExitCode:
    """The exit code for an error that ended a command."""
    if isinstance(error, ConfigError):
        return ExitCode.INVALID_CONFIG
    if isinstance(error, ListenError):
        return ExitCode.CANNOT_LISTEN
    if isinstance(error, GatewayUnreachableError):
        return ExitCode.UNREACHABLE
    if isinstance(error, GatewayUriError):
        return ExitCode.USAGE
    if isinstance(error, GatewayError):
        return http_status_to_exit_code(error.status_code)
    return ExitCode.FAILURE


def help_epilog() -> str:
    rows = "\n".join(f"  {int(code)}  {meaning}" for code, meaning in _MEANINGS.items())
    return f"\b\nExit codes:\n{rows}"  # \b: click keeps these lines as they are
