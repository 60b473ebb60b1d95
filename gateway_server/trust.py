"""The trust boundary of routes created at run time (admin API, both Python clients, ``routes create``).

A route of the config file is the operator's word: it may read the server's environment and files
(``$OPENAI_API_KEY``, ``/run/secrets/key``) and reach any host. A route created at run time is an
admin key's word, and an admin key is not the operator (with ``--allow-unauthenticated-admin`` it
is anyone). So a run-time route:

- carries a literal key given in the request, or names a credential of the file's
  ``credentials:`` section (whose base URL it cannot change); a ``$VAR``, a path or the name of a
  file on the server is refused with 400 naming the field, and so is a Bedrock model that would
  sign with the server's own AWS identity (no keys of its own);
- reaches only upstream hosts the operator allows (:class:`UpstreamHosts`): the providers' public
  endpoints, every host the config file names, and the patterns of ``server.allowed_upstream_hosts``.
  Anything else (``127.0.0.1``, ``169.254.169.254``, an internal name) is refused with 400 naming
  the base-URL field, before any request is made.

docs/security.md describes the whole boundary.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from gateway_server.providers import Adapter, ProviderConfig, get_adapter_class

if TYPE_CHECKING:
    from gateway_server.config.models import GatewayConfig, Model

__all__ = ["PUBLIC_UPSTREAM_HOSTS", "UpstreamHosts", "host_port_of", "runtime_model_issues"]

# The providers' public endpoints, reachable by run-time routes without any setting. Local servers
# (vLLM, Ollama, llama.cpp, LM Studio: localhost by default) are not public endpoints: a run-time
# route reaches them only when the file names them or the operator allows them.
PUBLIC_UPSTREAM_HOSTS: tuple[str, ...] = (
    "api.openai.com",
    "*.openai.azure.com",
    "api.anthropic.com",
    "api.cohere.com",
    "api.cohere.ai",
    "api.mistral.ai",
    "generativelanguage.googleapis.com",
    "bedrock-runtime.*.amazonaws.com",
    "api.together.xyz",
    "api.groq.com",
    "api.deepseek.com",
    "api.x.ai",
    "openrouter.ai",
)

_DEFAULT_PORTS = {"http": 80, "https": 443}


def host_port_of(url: str) -> tuple[str, int] | None:
    """``(host, port)`` of a base URL (lower-case host, the scheme's default port filled in)."""
    try:
        parts = urlsplit(url)
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        return None
    if not parts.hostname or port is None:
        return None
    return parts.hostname.lower().rstrip("."), port


@dataclass(frozen=True)
class UpstreamHosts:
    """Which upstream origins run-time routes may reach.

    ``patterns`` are ``host`` or ``host:port`` with ``*`` wildcards (``*.example.com``,
    ``10.0.0.*:8000``); a pattern without a port matches the scheme's default ports only (80, 443),
    so that allowing a host never opens its other services. ``origins`` are the exact origins the
    config file names."""

    patterns: tuple[str, ...] = PUBLIC_UPSTREAM_HOSTS
    origins: frozenset[tuple[str, int]] = frozenset()

    @classmethod
    def for_config(cls, config: GatewayConfig) -> UpstreamHosts:
        named = {origin for model in _file_models(config) if (origin := _model_origin(model)) is not None}
        named |= _credential_origins(config)
        extra = tuple(config.server.allowed_upstream_hosts)
        return cls(patterns=PUBLIC_UPSTREAM_HOSTS + extra, origins=frozenset(named))

    def allows(self, url: str) -> bool:
        origin = host_port_of(url)
        if origin is None:
            return False
        if origin in self.origins:
            return True
        host, port = origin
        for pattern in self.patterns:
            if pattern == "*":
                return True
            name, _, wanted = (
                pattern.lower().rpartition(":") if _has_port(pattern) else (pattern.lower(), "", "")
            )
            if wanted:
                if wanted != "*" and str(port) != wanted:
                    continue
            elif port not in (80, 443):
                continue
            if fnmatch.fnmatchcase(host, name):
                return True
        return False


def _has_port(pattern: str) -> bool:
    head, sep, tail = pattern.rpartition(":")
    return bool(sep) and bool(head) and (tail.isdigit() or tail == "*") and not head.endswith(":")


def _file_models(config: GatewayConfig) -> Iterable[Model]:
    for route in config.routes:
        yield from route.all_models


def _model_origin(model: Model) -> tuple[str, int] | None:
    adapter = get_adapter_class(model.provider)
    if adapter is None or model.config is None:
        return None
    url = adapter.base_url_of(model.config)
    return host_port_of(url) if url else None


def _credential_origins(config: GatewayConfig) -> set[tuple[str, int]]:
    found = set()
    for credential in config.credentials.values():
        adapter = get_adapter_class(credential.provider)
        url = adapter.base_url_of(credential.config) if adapter is not None else None
        origin = host_port_of(url) if url else None
        if origin is not None:
            found.add(origin)
    return found


def runtime_model_issues(
    loc: tuple[object, ...], adapter: type[Adapter], config: ProviderConfig, hosts: UpstreamHosts, named: bool
) -> list[tuple[tuple[object, ...], str]]:
    """What a model of a run-time route may not do, located (``named``: it names a credential,
    whose base URL and identity the operator chose)."""
    if adapter.spec.base_field is None or named:
        return []
    issues: list[tuple[tuple[object, ...], str]] = []
    identity = config.server_identity_field()
    if identity is not None:
        issues.append(
            (
                (*loc, "config", *identity.split(".")),
                "a route created at run time cannot act with the server's own identity (its AWS role or "
                "credential chain); give the keys themselves, or name a credential of the config file",
            )
        )
    url = adapter.base_url_of(config)
    if url and not hosts.allows(url):
        origin = host_port_of(url)
        where = f"{origin[0]}:{origin[1]}" if origin else url
        field = (adapter.spec.base_field or "").split(".")
        issues.append(
            (
                (*loc, "config", *field),
                f"upstream host '{where}' is not allowed for routes created at run time: they may reach "
                "the providers' public endpoints, the hosts the config file names, and the patterns of "
                "server.allowed_upstream_hosts (docs/security.md)",
            )
        )
    return issues
