"""The client's side of the error envelope: a gateway's error response back into its typed error.

The class comes from the envelope's ``type`` (else the HTTP status); it is built with its real
constructor (``GatewayError.from_fields``) from the fields the envelope carries, then given the
server's own message and status. Servers that send fewer fields (MLflow's gateway, older versions
of this one) still give errors whose documented attributes exist.
"""

from __future__ import annotations

from typing import Any

from gateway_server.errors import (
    AuthenticationError,
    BudgetExceededError,
    CircuitOpenError,
    ClientRequestError,
    ConfigError,
    ConfigNotPersistableError,
    GatewayError,
    InvalidRequestError,
    MethodNotAllowedError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    ResponseNotFoundError,
    RouteExistsError,
    RouteNotFoundError,
    SecretNotFoundError,
    SharedStateUnavailableError,
    UnsupportedRouteTypeError,
    UpstreamConnectionError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamStatusError,
    UpstreamTimeoutError,
)

__all__ = ["error_from_payload"]

Fields = dict[str, Any]

_BY_STATUS: dict[int, type[GatewayError]] = {
    400: InvalidRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: RouteNotFoundError,
    405: MethodNotAllowedError,
    409: RouteExistsError,
    413: PayloadTooLargeError,
    422: InvalidRequestError,
    429: RateLimitError,
    501: UnsupportedRouteTypeError,
    502: UpstreamError,
    503: UpstreamError,
    504: UpstreamTimeoutError,
}

# Every class the server answers with, by its envelope ``type``. The two generic types
# (``gateway_error``, ``invalid_request_error``) are left to the status table, which is more precise
# (a 404 for an unknown path, a 405...). Client-side classes never come from a server.
_BY_TYPE: dict[str, type[GatewayError]] = {
    cls.error_type: cls
    for cls in (
        ConfigError,
        AuthenticationError,
        PermissionDeniedError,
        RouteNotFoundError,
        ResponseNotFoundError,
        MethodNotAllowedError,
        RouteExistsError,
        ConfigNotPersistableError,
        PayloadTooLargeError,
        RateLimitError,
        BudgetExceededError,
        UnsupportedRouteTypeError,
        SharedStateUnavailableError,
        UpstreamError,
        UpstreamStatusError,
        UpstreamConnectionError,
        UpstreamProtocolError,
        UpstreamTimeoutError,
        CircuitOpenError,
    )
}


def _message_of(payload: Any) -> str:
    if isinstance(payload, dict):
        error = payload.get("error")
        message = error.get("message") if isinstance(error, dict) else None
        if isinstance(message, str):
            return message
        if isinstance(error, str):
            return error
        detail = payload.get("detail")
        if isinstance(detail, str):
            return detail
        if detail is not None:
            return str(detail)
    return str(payload)


def _class_for(status_code: int, error_type: str, fields: Fields) -> type[GatewayError]:
    if error_type == "invalid_config" and "variable" in fields:
        return SecretNotFoundError
    cls = _BY_TYPE.get(error_type) or _BY_STATUS.get(status_code)
    if cls is None:
        cls = ClientRequestError if 400 <= status_code < 500 else GatewayError
    return cls


def error_from_payload(status_code: int, payload: Any, headers: dict[str, str] | None = None) -> GatewayError:
    """Rebuild a typed error from a gateway's error response."""
    message = _message_of(payload)
    error_fields: Fields = {}
    if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
        error_fields = payload["error"]
    error_type = str(error_fields.get("type") or "")
    error = _class_for(status_code, error_type, error_fields).from_fields(message, error_fields)
    error.message = message
    error.args = (message,)
    error.status_code = status_code  # type: ignore[misc]
    retry_after = (headers or {}).get("retry-after") or (headers or {}).get("Retry-After")
    try:
        error.retry_after = float(retry_after) if retry_after else None
    except ValueError:
        error.retry_after = None
    return error
