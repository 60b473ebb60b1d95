"""The gateway's one exception tree, shared by the server, the client and the CLI.

::

    GatewayError                        root; .message, .status_code, .to_payload()
    ├── ConfigError                     .issues: every problem of one config at once
    │   └── SecretNotFoundError         a $ENV reference is unset (names the variable, never a value)
    ├── ClientRequestError (4xx)        the caller can fix it
    │   ├── InvalidRequestError         400; names the parameter and the allowed form
    │   ├── AuthenticationError         401; no or wrong gateway key
    │   ├── PermissionDeniedError       403; the key lacks the scope
    │   ├── RouteNotFoundError          404; names the route
    │   ├── MethodNotAllowedError       405
    │   ├── RouteExistsError            409
    │   ├── PayloadTooLargeError        413
    │   └── RateLimitError              429; .retry_after
    ├── UnsupportedRouteTypeError       501; provider x route type combination not offered
    ├── SharedStateUnavailableError     503; the shared Redis (server.shared_state) did not answer
    └── UpstreamError                   .provider, .upstream_status, .reason (never holds a secret)
        ├── UpstreamStatusError         status via ONE table (``upstream_status_to_gateway``)
        ├── UpstreamTimeoutError        504
        ├── UpstreamConnectionError     502
        └── UpstreamProtocolError       502 (not JSON, or not the documented shape)

Nothing here imports a web framework: the server renders these once (``api/errors.py``), the
client rebuilds them from the JSON envelope (``error_from_payload``), the CLI maps them to exit codes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

__all__ = [
    "AuthenticationError",
    "ClientRequestError",
    "ConfigError",
    "ConfigIssue",
    "GatewayError",
    "InvalidRequestError",
    "MethodNotAllowedError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "RateLimitError",
    "RouteExistsError",
    "RouteNotFoundError",
    "SecretNotFoundError",
    "SharedStateUnavailableError",
    "UnsupportedRouteTypeError",
    "UpstreamConnectionError",
    "UpstreamError",
    "UpstreamProtocolError",
    "UpstreamStatusError",
    "UpstreamTimeoutError",
    "error_from_payload",
    "upstream_status_to_gateway",
]


class GatewayError(Exception):
    """Root of every error the gateway raises on purpose."""

    status_code: ClassVar[int] = 500
    error_type: ClassVar[str] = "gateway_error"
    retry_after: float | None = None  # seconds; answered as Retry-After when set

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status_code is not None:
            self.status_code = status_code  # type: ignore[misc]

    def headers(self) -> dict[str, str]:
        """Extra HTTP headers that belong with this error: Retry-After when it says when to retry."""
        if self.retry_after is None:
            return {}
        return {"Retry-After": str(max(1, round(self.retry_after)))}

    def to_payload(self) -> dict[str, Any]:
        """The one JSON envelope: OpenAI-style ``error`` plus ``detail`` for MLflow clients."""
        return {
            "error": {"message": self.message, "type": self.error_type, "code": self.status_code},
            "detail": self.message,
        }

    def __str__(self) -> str:
        return self.message


# ---------------------------------------------------------------- config


@dataclass(frozen=True)
class ConfigIssue:
    """One problem of a config file, located as precisely as the file allows."""

    message: str
    path: str | None = None
    line: int | None = None
    route: str | None = None
    field: str | None = None

    def __str__(self) -> str:
        parts = []
        location = self.path or "<config>"
        if self.line is not None:
            location = f"{location}:{self.line}"
        parts.append(location)
        if self.route is not None:
            parts.append(f"route '{self.route}'")
        if self.field:
            parts.append(self.field)
        parts.append(self.message)
        return ": ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "line": self.line,
            "route": self.route,
            "field": self.field,
            "message": self.message,
        }


class ConfigError(GatewayError):
    """A config (file, or a route given to create_route) is invalid; lists every problem."""

    status_code = 400
    error_type = "invalid_config"

    def __init__(self, issues: list[ConfigIssue] | str, *, path: str | None = None) -> None:
        if isinstance(issues, str):
            issues = [ConfigIssue(issues, path=path)]
        self.issues = issues
        self.path = path
        first = issues[0] if issues else None
        self.route = first.route if first else None
        self.field = first.field if first else None
        super().__init__("\n".join(str(issue) for issue in issues) or "invalid configuration")


class SecretNotFoundError(ConfigError):
    """A ``$VAR`` secret reference names an environment variable that is not set."""

    def __init__(self, variable: str) -> None:
        self.variable = variable
        super().__init__(f"environment variable '{variable}' is not set")


# ---------------------------------------------------------------- caller errors


class ClientRequestError(GatewayError):
    status_code = 400
    error_type = "invalid_request_error"


class InvalidRequestError(ClientRequestError):
    """The request body or a parameter is wrong; the message names it and the allowed form."""

    def __init__(self, message: str, *, param: str | None = None, status_code: int | None = None) -> None:
        super().__init__(message, status_code=status_code)
        self.param = param


class AuthenticationError(ClientRequestError):
    status_code = 401
    error_type = "authentication_error"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": "Bearer"}


class PermissionDeniedError(ClientRequestError):
    status_code = 403
    error_type = "permission_denied"


class RouteNotFoundError(ClientRequestError):
    status_code = 404
    error_type = "not_found_error"

    def __init__(self, name: str, *, noun: str = "route") -> None:
        self.name = name
        super().__init__(
            f"The {noun} '{name}' is not present or active on the server. Please verify the {noun} name."
        )


class MethodNotAllowedError(ClientRequestError):
    status_code = 405
    error_type = "method_not_allowed"


class RouteExistsError(ClientRequestError):
    status_code = 409
    error_type = "conflict"

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"A route named '{name}' already exists; delete it first or choose another name.")


class PayloadTooLargeError(ClientRequestError):
    status_code = 413
    error_type = "payload_too_large"


class RateLimitError(ClientRequestError):
    status_code = 429
    error_type = "rate_limit_error"

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class UnsupportedRouteTypeError(GatewayError):
    """The provider does not offer this route type (MLflow answers 501 too)."""

    status_code = 501
    error_type = "not_implemented"

    def __init__(self, provider: str, route_type: str) -> None:
        self.provider = provider
        self.route_type = route_type
        kind = route_type.rsplit("/", 1)[-1]
        super().__init__(
            f"The {kind} route is not implemented for {provider} models "
            f"(provider '{provider}' does not offer route type '{route_type}')."
        )


class SharedStateUnavailableError(GatewayError):
    """The Redis named by ``server.shared_state`` did not answer in time (docs/scale-out.md).

    Its message never holds the URL's password; one shown to callers does not name the URL at all.
    """

    status_code = 503
    error_type = "shared_state_unavailable"

    def __init__(self, message: str, *, retry_after: float | None = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


# ---------------------------------------------------------------- upstream errors


def upstream_status_to_gateway(upstream_status: int) -> int:
    """The one table from an upstream HTTP status to the status the gateway answers.

    4xx that the caller can act on pass through; 401/403 become 502 because the caller's
    credentials are not the upstream's (the gateway's key for the provider is wrong); 5xx and
    anything unexpected become 502.
    """
    if upstream_status in (401, 403):
        return 502
    if 400 <= upstream_status < 500:
        return upstream_status
    return 502


class UpstreamError(GatewayError):
    status_code = 502
    error_type = "upstream_error"

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        upstream_status: int | None = None,
        reason: str | None = None,
        status_code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code)
        self.provider = provider
        self.upstream_status = upstream_status
        self.reason = reason
        self.retry_after = retry_after


class UpstreamStatusError(UpstreamError):
    """The upstream answered with a non-2xx status; ``reason`` is the provider's own message."""

    error_type = "upstream_status_error"

    def __init__(
        self,
        *,
        provider: str,
        upstream_status: int,
        reason: str,
        retry_after: float | None = None,
    ) -> None:
        status = upstream_status_to_gateway(upstream_status)
        super().__init__(
            f"{provider} returned HTTP {upstream_status}: {reason}",
            provider=provider,
            upstream_status=upstream_status,
            reason=reason,
            status_code=status,
            retry_after=retry_after,
        )


class UpstreamTimeoutError(UpstreamError):
    status_code = 504
    error_type = "upstream_timeout"


class UpstreamConnectionError(UpstreamError):
    status_code = 502
    error_type = "upstream_connection_error"


class UpstreamProtocolError(UpstreamError):
    status_code = 502
    error_type = "upstream_protocol_error"


# ---------------------------------------------------------------- envelope -> class (client side)

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

_BY_TYPE: dict[str, type[GatewayError]] = {
    cls.error_type: cls
    for cls in (
        ConfigError,
        SharedStateUnavailableError,
        UpstreamStatusError,
        UpstreamConnectionError,
        UpstreamProtocolError,
        UpstreamTimeoutError,
    )
}


def _message_of(payload: Any) -> str:
    if isinstance(payload, dict):
        error = payload.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return error["message"]
        if isinstance(error, str):
            return error
        detail = payload.get("detail")
        if isinstance(detail, str):
            return detail
        if detail is not None:
            return str(detail)
    return str(payload)


def error_from_payload(status_code: int, payload: Any, headers: dict[str, str] | None = None) -> GatewayError:
    """Rebuild a typed error from a gateway's error response (used by the client)."""
    message = _message_of(payload)
    error_type = ""
    if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
        error_type = str(payload["error"].get("type") or "")
    cls = _BY_TYPE.get(error_type) or _BY_STATUS.get(status_code)
    if cls is None:
        cls = ClientRequestError if 400 <= status_code < 500 else GatewayError
    error = GatewayError.__new__(cls)
    GatewayError.__init__(error, message, status_code=status_code)
    retry_after = (headers or {}).get("retry-after") or (headers or {}).get("Retry-After")
    try:
        error.retry_after = float(retry_after) if retry_after else None
    except ValueError:
        error.retry_after = None
    if issubclass(cls, ConfigError):
        error.issues = [ConfigIssue(line) for line in message.splitlines()]  # type: ignore[attr-defined]
    return error
