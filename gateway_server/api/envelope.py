"""The error envelope as bytes, for the hot path (no web framework imported here).

``api/errors.py`` renders the same envelope for the FastAPI side.
"""

from __future__ import annotations

import orjson

from gateway_server.errors import GatewayError

__all__ = ["REQUEST_ID_SCOPE", "error_body", "internal_error"]

# The ASGI scope key where the app puts the request id of a request it hands to guard() or FastAPI
# (the invocation handlers hold theirs in the observability record), for their error bodies.
REQUEST_ID_SCOPE = "gatewayctl.request_id"


def error_body(exc: GatewayError, request_id: str | None = None) -> bytes:
    """The envelope; with ``request_id``, also in ``error.request_id`` (what to quote in a report)."""
    payload = exc.to_payload()
    if request_id is not None:
        payload["error"]["request_id"] = request_id
    return orjson.dumps(payload)


def internal_error() -> GatewayError:
    return GatewayError("The gateway failed to handle this request; the server log has the details.")
