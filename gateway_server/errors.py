"""The gateway's one exception tree, shared by the server, the client and the CLI.

::

    GatewayError                        root; .message, .status_code, .to_payload()
    ├── ConfigError                     .issues: every problem of one config at once
    │   └── SecretNotFoundError         .variable: a $ENV reference is unset (never a value)
    ├── ClientRequestError (4xx)        the caller can fix it
    │   ├── InvalidRequestError         400; .param names the parameter
    │   ├── AuthenticationError         401; no or wrong gateway key
    │   ├── PermissionDeniedError       403; the key lacks the scope
    │   ├── RouteNotFoundError          404; .name of the route
    │   ├── ResponseNotFoundError       404; .response_id: a /v1/responses id not stored (or expired)
    │   ├── MethodNotAllowedError       405
    │   ├── RouteExistsError            409; .name of the route
    │   ├── ConfigNotPersistableError   409; a route change that could not be saved
    │   ├── PayloadTooLargeError        413
    │   └── RateLimitError              429; .retry_after
    │       └── BudgetExceededError     429, code "budget_exceeded"; a key's budget is spent
    ├── UnsupportedRouteTypeError       501; .provider x .route_type not offered
    ├── SharedStateUnavailableError     503; the shared Redis (server.shared_state) did not answer
    ├── ListenError                     serve cannot listen on its address (port in use, bad host)
    ├── UpstreamError                   .provider, .upstream_status, .reason (never holds a secret)
    │   ├── UpstreamStatusError         status via ONE table (``upstream_status_to_gateway``)
    │   ├── UpstreamTimeoutError        504
    │   ├── UpstreamConnectionError     502
    │   ├── UpstreamProtocolError       502 (not JSON, or not the documented shape)
    │   └── CircuitOpenError            503; every model of the route is paused (circuit open)
    ├── GatewayUriError                 client side: no usable gateway URI was given
    └── GatewayUnreachableError         client side: no HTTP answer from the gateway at all
        └── GatewayTimeoutError         client side: this client's own timeout expired

Nothing here imports a web framework: the server renders these once (``api/errors.py``), the
client rebuilds them from the JSON envelope (``gatewayctl._envelope``), the CLI maps them to exit
codes. The envelope carries each class's own fields (``param``, ``route``, ``provider``,
``upstream_status``, ``reason``, ``issues``, ...) next to ``message``, ``type`` and ``code``, so
the client rebuilds an error with its real constructor and every documented attribute is there.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, ClassVar

__all__ = [
    "MAX_RETRY_AFTER",
    "AuthenticationError",
    "BudgetExceededError",
    "CircuitOpenError",
    "ClientRequestError",
    "ConfigError",
    "ConfigIssue",
    "ConfigNotPersistableError",
    "GatewayError",
    "GatewayTimeoutError",
    "GatewayUnreachableError",
    "GatewayUriError",
    "InvalidRequestError",
    "ListenError",
    "MethodNotAllowedError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "RateLimitError",
    "ResponseNotFoundError",
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
    "upstream_status_to_gateway",
]

Fields = dict[str, Any]


# The longest Retry-After the gateway answers, in seconds (an upstream's larger value is capped).
MAX_RETRY_AFTER = 3600


class GatewayError(Exception):
    """Root of every error the gateway raises on purpose."""

    status_code: ClassVar[int] = 500
    error_type: ClassVar[str] = "gateway_error"
    error_code: ClassVar[str | None] = None  # the envelope's ``error.code``; the status when None
    retry_after: float | None = None  # seconds; answered as Retry-After when set

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status_code is not None:
            self.status_code = status_code  # type: ignore[misc]

    def headers(self) -> dict[str, str]:
        """Extra HTTP headers that belong with this error: Retry-After when it says when to retry."""
        seconds = self.retry_after
        if seconds is None or not 0 <= seconds < math.inf:  # nan and inf from an upstream say nothing
            return {}
        return {"Retry-After": str(max(1, min(MAX_RETRY_AFTER, round(seconds))))}

    def fields(self) -> Fields:
        """This class's own attributes, carried in the envelope (``None`` values are left out)."""
        return {}

    def to_payload(self) -> dict[str, Any]:
        """The one JSON envelope: OpenAI-style ``error`` plus ``detail`` for MLflow clients."""
        error: dict[str, Any] = {
            "message": self.message,
            "type": self.error_type,
            "code": self.error_code or self.status_code,
        }
        for key, value in self.fields().items():
            if value is not None:
                error[key] = value
        return {"error": error, "detail": self.message}

    @classmethod
    def from_fields(cls, message: str, fields: Fields) -> GatewayError:
        """Rebuild from an envelope with the real constructor (the client's side of ``fields``)."""
        return cls(message)

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> Any:  # pickles (multiprocessing, caches) keep every attribute
        return (_unpickle, (type(self), self.message, self.__dict__))


def _unpickle(cls: type[GatewayError], message: str, state: dict[str, Any]) -> GatewayError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


def _str(fields: Fields, key: str) -> str | None:
    value = fields.get(key)
    return value if isinstance(value, str) else None


def _int(fields: Fields, key: str) -> int | None:
    value = fields.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


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

    @classmethod
    def from_dict(cls, data: Any) -> ConfigIssue:
        if not isinstance(data, dict):
            return cls(str(data))
        return cls(
            message=str(data.get("message", "")),
            path=_str(data, "path"),
            line=_int(data, "line"),
            route=_str(data, "route"),
            field=_str(data, "field"),
        )


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

    def fields(self) -> Fields:
        return {"issues": [issue.to_dict() for issue in self.issues]}

    @classmethod
    def from_fields(cls, message: str, fields: Fields) -> GatewayError:
        raw = fields.get("issues")
        if isinstance(raw, list) and raw:
            return cls([ConfigIssue.from_dict(item) for item in raw])
        return cls([ConfigIssue(line) for line in message.splitlines() or [message]])


class SecretNotFoundError(ConfigError):
    """A ``$VAR`` secret reference names an environment variable that is not set."""

    def __init__(self, variable: str) -> None:
        self.variable = variable
        super().__init__(f"environment variable '{variable}' is not set")

    def fields(self) -> Fields:
        return {**super().fields(), "variable": self.variable}

    @classmethod
    def from_fields(cls, message: str, fields: Fields) -> GatewayError:
        return cls(_str(fields, "variable") or "")


# ---------------------------------------------------------------- caller errors


class ClientRequestError(GatewayError):
    status_code = 400
    error_type = "invalid_request_error"


class InvalidRequestError(ClientRequestError):
    """The request body or a parameter is wrong; the message names it and the allowed form."""

    def __init__(self, message: str, *, param: str | None = None, status_code: int | None = None) -> None:
        super().__init__(message, status_code=status_code)
        self.param = param

    def fields(self) -> Fields:
        return {"param": self.param}

    @classmethod
    def from_fields(cls, message: str, fields: Fields) -> GatewayError:
        return cls(message, param=_str(fields, "param"))


class AuthenticationError(ClientRequestError):
    status_code = 401
    error_type = "authentication_error"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": "Bearer"}


class PermissionDeniedError(ClientRequestError):
    status_code = 403
    error_type = "permission_denied"


# MLflow's words for an unknown or existing route, so a name is recovered from MLflow servers too.
_NAMED = re.compile(r"(?:route|endpoint) (?:named )?'(?P<name>[^']*)'")


def _name_from(message: str, fields: Fields) -> str:
    name = _str(fields, "route")
    if name is None:
        match = _NAMED.search(message)
        name = match.group("name") if match else ""
    return name


class ResponseNotFoundError(ClientRequestError):
    status_code = 404
    error_type = "response_not_found"

    def __init__(self, response_id: str) -> None:
        self.response_id = response_id
        super().__init__(f"Response with id '{response_id}' not found (it was never stored, or it expired).")

    def fields(self) -> Fields:
        return {"response_id": self.response_id}

    @classmethod
    def from_fields(cls, message: str, fields: Fields) -> GatewayError:
        return cls(_str(fields, "response_id") or "")


class RouteNotFoundError(ClientRequestError):
    status_code = 404
    error_type = "not_found_error"

    def __init__(self, name: str, *, noun: str = "route") -> None:
        self.name = name
        super().__init__(
            f"The {noun} '{name}' is not present or active on the server. Please verify the {noun} name."
        )

    def fields(self) -> Fields:
        return {"route": self.name}

    @classmethod
    def from_fields(cls, message: str, fields: Fields) -> GatewayError:
        return cls(_name_from(message, fields))


class MethodNotAllowedError(ClientRequestError):
    status_code = 405
    error_type = "method_not_allowed"


class RouteExistsError(ClientRequestError):
    status_code = 409
    error_type = "conflict"

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"A route named '{name}' already exists; delete it first or choose another name.")

    def fields(self) -> Fields:
        return {"route": self.name}

    @classmethod
    def from_fields(cls, message: str, fields: Fields) -> GatewayError:
        return cls(_name_from(message, fields))


class ConfigNotPersistableError(ClientRequestError):
    """Route changes are refused because they could not be saved (the app has no config file)."""

    status_code = 409
    error_type = "config_not_persistable"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(
            message
            or "Route changes cannot be persisted: this gateway was started from a config without a "
            "file path, so a created or deleted route would be lost on restart. Start it from a "
            "config file (gatewayctl serve CONFIG) to change routes at run time."
        )


class PayloadTooLargeError(ClientRequestError):
    status_code = 413
    error_type = "payload_too_large"


class RateLimitError(ClientRequestError):
    status_code = 429
    error_type = "rate_limit_error"

    def __init__(
        self, message: str, *, retry_after: float | None = None, extra_headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.extra_headers = extra_headers  # e.g. X-RateLimit-*-Tokens of a token limit

    def headers(self) -> dict[str, str]:
        headers = super().headers()
        return {**self.extra_headers, **headers} if self.extra_headers else headers


class BudgetExceededError(RateLimitError):
    """A gateway key's budget (USD or tokens, per calendar day or month) is spent (docs/governance.md)."""

    error_type = "budget_exceeded"
    error_code = "budget_exceeded"


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

    def fields(self) -> Fields:
        return {"provider": self.provider, "route_type": self.route_type}

    @classmethod
    def from_fields(cls, message: str, fields: Fields) -> GatewayError:
        return cls(_str(fields, "provider") or "", _str(fields, "route_type") or "")


class SharedStateUnavailableError(GatewayError):
    """The Redis named by ``server.shared_state`` did not answer in time (docs/scale-out.md).

    Its message never holds the URL's password; one shown to callers does not name the URL at all.
    """

    status_code = 503
    error_type = "shared_state_unavailable"

    def __init__(self, message: str, *, retry_after: float | None = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ListenError(GatewayError):
    """``gatewayctl serve`` cannot listen on its address: port in use, unknown host, no permission.

    Raised before anything is served; the CLI gives it its own exit code (never the config's 3).
    """

    error_type = "cannot_listen"

    def __init__(self, message: str, *, address: str) -> None:
        super().__init__(message)
        self.address = address


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

    def fields(self) -> Fields:
        return {"provider": self.provider, "upstream_status": self.upstream_status, "reason": self.reason}

    @classmethod
    def from_fields(cls, message: str, fields: Fields) -> GatewayError:
        return cls(
            message,
            provider=_str(fields, "provider"),
            upstream_status=_int(fields, "upstream_status"),
            reason=_str(fields, "reason"),
        )


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

    @classmethod
    def from_fields(cls, message: str, fields: Fields) -> GatewayError:
        # A server that did not send the fields (an older gateway) still gives the three attributes.
        return cls(
            provider=_str(fields, "provider") or "",
            upstream_status=_int(fields, "upstream_status") or 0,
            reason=_str(fields, "reason") or message,
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


class CircuitOpenError(UpstreamError):
    """Every model of the route is behind an open circuit: answered at once, nothing is called."""

    status_code = 503
    error_type = "upstream_unavailable"


# ---------------------------------------------------------------- client side (no HTTP answer)


class GatewayUriError(GatewayError):
    """No gateway URI is set, or the one given is not a usable URI (a usage error, not a server's)."""

    status_code = 400
    error_type = "invalid_gateway_uri"


class GatewayUnreachableError(GatewayError):
    """No HTTP answer from the gateway: connection refused, name not resolved, connection dropped.

    Deliberately not an ``UpstreamError``: those mean the *gateway* could not reach the *provider*."""

    status_code = 503
    error_type = "gateway_unreachable"


class GatewayTimeoutError(GatewayUnreachableError):
    """This client gave up waiting for the gateway (not HTTP 504, which is ``UpstreamTimeoutError``)."""

    status_code = 504
    error_type = "gateway_timeout"
