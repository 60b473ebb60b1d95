"""Options shared by every command that talks to a gateway, and the client they configure."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Annotated

import typer

from gatewayctl._common import API_KEY_ENV, DEFAULT_TIMEOUT
from gatewayctl._uri import GATEWAY_URI_ENV, GatewayUriError
from gatewayctl.cli.output import OutputFormat

if TYPE_CHECKING:
    from gatewayctl.client import GatewayClient

__all__ = ["ApiKey", "GatewayUri", "Output", "Timeout", "make_client"]

GatewayUri = Annotated[
    str | None,
    typer.Option(
        "--gateway-uri",
        envvar=GATEWAY_URI_ENV,
        show_envvar=True,
        metavar="URI",
        help="URI of the gateway, e.g. http://127.0.0.1:5000.",
    ),
]
ApiKey = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        envvar=API_KEY_ENV,
        show_envvar=True,
        metavar="KEY",
        help="Gateway key, sent as a Bearer token (create and delete need the admin scope).",
    ),
]
Timeout = Annotated[
    float,
    typer.Option("--timeout", metavar="SECONDS", min=0.001, help="Seconds to wait for the gateway's answer."),
]
Output = Annotated[
    OutputFormat,
    typer.Option("--output", "-o", case_sensitive=False, help="text for people, json for scripts."),
]


def make_client(
    gateway_uri: str | None, api_key: str | None, timeout: float = DEFAULT_TIMEOUT
) -> GatewayClient:
    from gatewayctl.client import GatewayClient  # httpx: only for the commands that call a gateway

    if not gateway_uri and not os.environ.get(GATEWAY_URI_ENV):
        # The library's message (MLflow's) names set_gateway_uri(); a shell user needs the option.
        raise GatewayUriError(
            f"No gateway URI: pass --gateway-uri URI or set {GATEWAY_URI_ENV} (e.g. http://127.0.0.1:5000)."
        )
    return GatewayClient(gateway_uri, api_key=api_key, timeout=timeout)
