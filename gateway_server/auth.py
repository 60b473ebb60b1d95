"""Gateway API keys: who may query routes and who may change them.

Callers send ``Authorization: Bearer <key>``. Keys come from the config's ``auth:`` section, each
with a name and scopes (``query``, ``admin``; neither implies the other), given either as a secret
(``$ENV``, a file, or a literal) or as the sha256 hex digest of the key, so a config file can be
committed without secrets. Every key is reduced to its sha256 digest when the table is built; a
request costs one sha256 of the presented key and one ``hmac.compare_digest`` per configured key
(no early exit), a few microseconds in all, which is why this module is called on the hot path.

Without an ``auth:`` section the gateway is open for queries and closed for route changes, unless
the operator started it with ``--allow-unauthenticated-admin``.

The presented key is never logged and never echoed in an error; only the key's *name* leaves here.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass

from gateway_server.config import AuthConfig
from gateway_server.errors import AuthenticationError, ConfigError, PermissionDeniedError

__all__ = ["ADMIN", "ALLOW_UNAUTHENTICATED_ADMIN_ENV", "QUERY", "SCOPES", "ApiKey", "KeyTable"]

QUERY = "query"
ADMIN = "admin"
SCOPES = (QUERY, ADMIN)

# How ``serve --workers N`` passes --allow-unauthenticated-admin to its worker processes ("1"/"0");
# read only by the worker factory (``app.create_app_from_env``), never by a single-process server.
ALLOW_UNAUTHENTICATED_ADMIN_ENV = "GATEWAYCTL_ALLOW_UNAUTHENTICATED_ADMIN"

# How ``serve --workers N`` passes --allow-unauthenticated-admin to its worker processes ("1"/"0");
# read only by the worker factory (``app.create_app_from_env``), never by a single-process server.
ALLOW_UNAUTHENTICATED_ADMIN_ENV = "GATEWAYCTL_ALLOW_UNAUTHENTICATED_ADMIN"

_AUTHORIZATION = b"authorization"
_BEARER = b"bearer "
_X_API_KEY = b"x-api-key"


@dataclass(frozen=True, slots=True)
class ApiKey:
    name: str
    digest: bytes  # sha256 of the key's UTF-8 bytes
    scopes: frozenset[str]

    def __repr__(self) -> str:  # the digest is not the key, but there is no reason to print it either
        return f"ApiKey(name={self.name!r}, scopes={sorted(self.scopes)!r})"


class KeyTable:
    """The configured keys, ready to check a request's ``Authorization`` header against."""

    __slots__ = ("_keys", "allow_unauthenticated_admin")

    def __init__(self, keys: Iterable[ApiKey] = (), *, allow_unauthenticated_admin: bool = False) -> None:
        self._keys = tuple(keys)
        self.allow_unauthenticated_admin = allow_unauthenticated_admin

    @classmethod
    def from_config(cls, auth: AuthConfig | None, *, allow_unauthenticated_admin: bool = False) -> KeyTable:
        if auth is None:
            return cls(allow_unauthenticated_admin=allow_unauthenticated_admin)
        keys = []
        seen: dict[bytes, str] = {}
        for key in auth.keys:
            if key.key is not None:
                digest = hashlib.sha256(key.key.get().encode("utf-8")).digest()
            else:
                assert key.key_sha256 is not None  # AuthKeyConfig requires exactly one form
                digest = bytes.fromhex(key.key_sha256)
            if digest in seen:
                raise ConfigError(
                    f"auth.keys: the keys '{seen[digest]}' and '{key.name}' are the same key; "
                    "give each key its own value"
                )
            seen[digest] = key.name
            keys.append(ApiKey(key.name, digest, frozenset(key.scopes)))
        # With keys configured, the flag has no effect: admin needs a key with the admin scope.
        return cls(keys)

    @property
    def enabled(self) -> bool:
        """True when the config has keys (every protected path then needs one)."""
        return bool(self._keys)

    @property
    def names(self) -> list[str]:
        return [key.name for key in self._keys]

    def authorize(self, headers: Iterable[tuple[bytes, bytes]], scope: str) -> str | None:
        """The name of the key in ``headers`` (ASGI raw headers) if it has ``scope``.

        Returns None when no keys are configured and the scope is open (``query`` always,
        ``admin`` with ``--allow-unauthenticated-admin``). Raises :class:`AuthenticationError`
        (401) for a missing or unknown key and :class:`PermissionDeniedError` (403) for a key
        without the scope, or for route changes on a gateway without keys.
        """
        if not self._keys:
            if scope == ADMIN and not self.allow_unauthenticated_admin:
                raise PermissionDeniedError(
                    "Route changes are disabled: this gateway has no 'auth:' section. Add a key with "
                    "the 'admin' scope to the config's auth.keys, or start the server with "
                    "--allow-unauthenticated-admin (local development only)."
                )
            return None
        token = _bearer_token(headers)
        if token is None:
            raise AuthenticationError(
                "Missing API key: send the gateway key as 'Authorization: Bearer <key>' (or 'x-api-key: <key>')."
            )
        digest = hashlib.sha256(token).digest()
        found = None
        for key in self._keys:  # every key is compared, so timing does not tell which one matched
            if hmac.compare_digest(digest, key.digest) and found is None:
                found = key
        if found is None:
            raise AuthenticationError("Invalid API key: the gateway does not know this key.")
        if scope not in found.scopes:
            raise PermissionDeniedError(
                f"The API key '{found.name}' does not have the '{scope}' scope needed here "
                f"(its scopes: {', '.join(sorted(found.scopes))})."
            )
        return found.name


def _bearer_token(headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
    """The key of ``Authorization: Bearer <key>``, else of ``x-api-key: <key>`` (what Anthropic's
    SDKs and Claude Code send)."""
    api_key = None
    for name, value in headers:
        if name == _AUTHORIZATION:
            if value[:7].lower() != _BEARER:
                return None
            token = value[7:].strip()
            return token or None
        if name == _X_API_KEY:
            api_key = value.strip() or None
    return api_key
