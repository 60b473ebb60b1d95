"""Which gateway the library talks to when the caller does not say.

Resolution order, as in MLflow's ``mlflow.gateway``: the ``gateway_uri`` argument, then the
value stored by :func:`set_gateway_uri`, then the ``MLFLOW_GATEWAY_URI`` environment variable.
Validation follows MLflow too (a scheme and a host, or ``databricks``), so a URI MLflow accepts is
accepted here; the client then refuses schemes it cannot speak (only http and https).
"""

from __future__ import annotations

import os
from urllib.parse import urlparse

from gateway_server.errors import GatewayUriError

__all__ = ["GATEWAY_URI_ENV", "GatewayUriError", "get_gateway_uri", "resolve_gateway_uri", "set_gateway_uri"]

GATEWAY_URI_ENV = "MLFLOW_GATEWAY_URI"

_UNSET_MESSAGE = (
    "No Gateway server uri has been set. Please either set the MLflow Gateway URI via "
    "`set_gateway_uri()` or set the environment variable `MLFLOW_GATEWAY_URI` to the running "
    "Gateway API server's uri (e.g. http://127.0.0.1:5000), or pass `--gateway-uri` to gatewayctl."
)

_gateway_uri: str | None = None


def _validate(uri: str) -> str:
    parsed = urlparse(uri)
    if uri == "databricks" or parsed.scheme == "databricks" or (parsed.scheme and parsed.netloc):
        return uri
    raise GatewayUriError(
        f"The gateway uri provided is missing required elements: {uri!r}. "
        "Expected a scheme and a host, e.g. http://127.0.0.1:5000."
    )


def set_gateway_uri(gateway_uri: str) -> None:
    """Store the gateway URI used by the module-level functions and by clients built without one."""
    global _gateway_uri
    _gateway_uri = _validate(gateway_uri)


def get_gateway_uri() -> str:
    """The URI stored by :func:`set_gateway_uri`, else ``MLFLOW_GATEWAY_URI``; raises if neither is set."""
    return resolve_gateway_uri(None)


def resolve_gateway_uri(gateway_uri: str | None) -> str:
    """The argument if given, then the stored URI, then the environment; validated."""
    if gateway_uri:
        return _validate(gateway_uri)
    if _gateway_uri is not None:
        return _gateway_uri
    from_env = os.environ.get(GATEWAY_URI_ENV)
    if from_env:
        return _validate(from_env)
    raise GatewayUriError(_UNSET_MESSAGE)


def _reset_gateway_uri() -> None:
    """Forget the stored URI (for tests)."""
    global _gateway_uri
    _gateway_uri = None
