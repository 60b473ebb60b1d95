"""The config's pydantic models: routes (or MLflow 2.9+ ``endpoints``), optional ``auth:`` and ``server:``.

Strict where MLflow is lax: unknown keys are errors (with a "did you mean"). Reading a file and
turning pydantic's errors into located ones (file, line, route, field) is
:mod:`gateway_server.config.loader`'s job; ``gateway_server.config`` re-exports both.
"""

from __future__ import annotations

import difflib
import re
from collections import Counter
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    field_validator,
    model_validator,
)

from gateway_server.errors import ConfigIssue
from gateway_server.governance import NANO, Budget
from gateway_server.providers import PROVIDERS, ProviderConfig, get_adapter_class, normalize_provider_name
from gateway_server.routes import Limit, ModelInfo, Route, RouteType, route_name_problem
from gateway_server.secrets import Secret
from gateway_server.usage import Price

__all__ = [
    "QUERY_SUFFIX",
    "ROUTE_BASE",
    "AuthConfig",
    "AuthKeyConfig",
    "BudgetConfig",
    "CredentialConfig",
    "GatewayConfig",
    "LimitConfig",
    "Model",
    "OtelConfig",
    "PriceConfig",
    "RetryConfig",
    "RouteConfig",
    "ServerConfig",
    "WeightedModel",
]

ROUTE_BASE = "/gateway/"
QUERY_SUFFIX = "/invocations"

# Appended to the duplicate-names error, so the loader can tell it was already reported per route.
_DUPLICATES_SEEN = " (each route name must appear once)"


def alias_clashes(routes: list[tuple[str, list[str]]]) -> list[tuple[int, int, str]]:
    """``(route index, alias index, message)`` for each alias that is a route name or another
    route's alias: a model name must name one route only."""
    names = {name: index for index, (name, _) in enumerate(routes)}
    owners: dict[str, str] = {}
    found = []
    for index, (name, aliases) in enumerate(routes):
        for position, alias in enumerate(aliases):
            if alias == name:
                found.append((index, position, f"alias '{alias}' is the route's own name; remove it"))
            elif alias in names:
                found.append(
                    (index, position, f"alias '{alias}' of route '{name}' is the name of another route")
                )
            elif alias in owners and owners[alias] != name:
                message = f"alias '{alias}' of route '{name}' is already an alias of route '{owners[alias]}'"
                found.append((index, position, message))
            else:
                owners[alias] = name
    return found


def _did_you_mean(word: str, choices: Any) -> str:
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean '{match[0]}'?" if match else ""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------- models


def _validate_provider_config(provider: str, config: Any) -> ProviderConfig:
    adapter = get_adapter_class(provider)
    assert adapter is not None  # the provider validator ran first
    if isinstance(config, adapter.config_model):
        return config
    return adapter.config_model.model_validate(config if config is not None else {})


class PriceConfig(_Strict):
    """``price: {input, output}``: USD per one million prompt / completion tokens."""

    input: float = Field(ge=0)
    output: float = Field(ge=0)

    def build(self) -> Price:
        return Price(self.input, self.output)


def _provider_name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a provider name")
    adapter = get_adapter_class(value)
    if adapter is None:
        hint = _did_you_mean(normalize_provider_name(value), PROVIDERS)
        known = "" if hint else f" (known providers: {', '.join(sorted(PROVIDERS))})"
        raise ValueError(f"unknown provider '{value}'{hint}{known}")
    return adapter.name


class Model(_Strict):
    """``model:``: the provider, the upstream model name, and the provider's own config."""

    provider: str
    name: str | None = None
    config: ProviderConfig | None = None
    price: PriceConfig | None = None  # what its tokens cost (usage and USD budgets); none: 0
    credentials: str | None = None  # a name of the file's credentials: section (config/credentials.py)

    @field_validator("provider", mode="before")
    @classmethod
    def _known_provider(cls, value: Any) -> str:
        return _provider_name(value)

    @model_validator(mode="after")
    def _typed_config(self) -> Model:
        # Programmatic use (Model(provider=..., config={...})); the file loader validates configs
        # beforehand so that their errors point at the exact field.
        if not isinstance(self.config, get_adapter_class(self.provider).config_model):  # type: ignore[union-attr]
            raw = self.config.model_dump() if isinstance(self.config, ProviderConfig) else self.config
            object.__setattr__(self, "config", _validate_provider_config(self.provider, raw))
        return self

    @model_validator(mode="before")
    @classmethod
    def _config_dict(cls, data: Any) -> Any:
        # Keep a raw dict for config until the provider is known (see _typed_config).
        if isinstance(data, dict) and isinstance(data.get("config"), dict):
            provider = data.get("provider")
            adapter = get_adapter_class(provider) if isinstance(provider, str) else None
            if adapter is not None:
                data = {**data, "config": adapter.config_model.model_validate(data["config"])}
        return data

    def to_info(self) -> ModelInfo:
        return ModelInfo(name=self.name, provider=self.provider)


class CredentialConfig(_Strict):
    """An entry of ``credentials:`` (config/credentials.py): a provider and its config, keys and base URL."""

    provider: str
    config: ProviderConfig

    @field_validator("provider", mode="before")
    @classmethod
    def _known_provider(cls, value: Any) -> str:
        return _provider_name(value)


class WeightedModel(Model):
    """An entry of ``models:`` (traffic split)."""

    weight: float = Field(default=1.0, gt=0)


_PERIOD = re.compile(r"^\s*(\d+)?\s*(second|minute|hour|day)s?\s*$")
_PERIOD_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


class LimitConfig(_Strict):
    """MLflow's ``limit: {calls, renewal_period}`` plus ``tokens`` (instead of ``calls``: prompt +
    completion tokens per window) and ``key``: what the calls or tokens are counted per."""

    calls: int | None = Field(default=None, gt=0)
    tokens: int | None = Field(default=None, gt=0)
    renewal_period: str
    key: Literal["route", "client_ip", "api_key"] = "route"

    @model_validator(mode="after")
    def _one_measure(self) -> LimitConfig:
        if (self.calls is None) == (self.tokens is None):
            raise ValueError(
                "give exactly one of 'calls' (requests per window) or 'tokens' (tokens per window)"
            )
        return self

    def public(self) -> dict[str, Any]:
        measure = {"calls": self.calls} if self.calls is not None else {"tokens": self.tokens}
        return {**measure, "renewal_period": self.renewal_period, "key": self.key}

    @field_validator("renewal_period")
    @classmethod
    def _period(cls, value: str) -> str:
        if not _PERIOD.match(value):
            raise ValueError("must be second, minute, hour or day, optionally with a count ('5 minutes')")
        return value.strip()

    @property
    def period_seconds(self) -> int:
        match = _PERIOD.match(self.renewal_period)
        assert match is not None
        return int(match.group(1) or 1) * _PERIOD_SECONDS[match.group(2)]


def _limit_list(value: Any) -> Any:
    """``limit:`` is one mapping or a list of them; held as a list."""
    return [value] if isinstance(value, dict) else value


class RetryConfig(_Strict):
    attempts: int = Field(default=1, ge=1, le=10)
    backoff: float = Field(default=0.5, ge=0, le=60)


class RouteConfig(_Strict):
    """One entry of ``routes:`` / ``endpoints:``."""

    name: str
    route_type: RouteType
    model: Model | None = None
    models: list[WeightedModel] | None = None
    fallbacks: list[Model] = Field(default_factory=list)
    retry: RetryConfig | None = None
    timeout: float | None = Field(default=None, gt=0)
    limit: list[LimitConfig] | None = None  # one mapping or a list of them in the file
    # How this route's upstream calls travel (upstream/transport.py); None: server.upstream_transport.
    transport: Literal["pool", "httpx"] | None = None
    # Other model names the /v1/* paths accept for this route (agents send vendor model names).
    aliases: list[str] = Field(default_factory=list)

    _limit_form = field_validator("limit", mode="before")(lambda value: _limit_list(value))

    @model_validator(mode="before")
    @classmethod
    def _endpoint_spelling(cls, data: Any) -> Any:
        if isinstance(data, dict) and "endpoint_type" in data:
            if "route_type" in data:
                raise ValueError("give either route_type or endpoint_type, not both")
            data = {("route_type" if k == "endpoint_type" else k): v for k, v in data.items()}
        return data

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        problem = route_name_problem(value)
        if problem is not None:
            shown = value if len(value) <= 40 else value[:40] + "..."
            raise ValueError(f"'{shown}' is not a valid route name: {problem}")
        return value

    @field_validator("aliases")
    @classmethod
    def _aliases(cls, value: list[str]) -> list[str]:
        for alias in value:
            if not alias or alias != alias.strip() or "/" in alias:
                raise ValueError(
                    f"'{alias}' is not a valid alias: a model name without spaces around it or '/'"
                )
        repeated = sorted(alias for alias, count in Counter(value).items() if count > 1)
        if repeated:
            raise ValueError(f"aliases must be unique; repeated: {', '.join(repeated)}")
        return value

    @model_validator(mode="after")
    def _one_model_form(self) -> RouteConfig:
        if (self.model is None) == (self.models is None):
            raise ValueError("give exactly one of 'model' (one model) or 'models' (a weighted traffic split)")
        if self.models is not None and not self.models:
            raise ValueError("'models' must list at least one model")
        return self

    @property
    def primary_models(self) -> list[Model]:
        return [self.model] if self.model is not None else list(self.models or [])

    @property
    def all_models(self) -> list[Model]:
        return self.primary_models + list(self.fallbacks)

    def secrets(self) -> tuple[Secret, ...]:
        return tuple(secret for model in self.all_models if model.config for secret in model.config.secrets())

    @property
    def limits(self) -> list[LimitConfig]:
        return list(self.limit or ())

    def to_route(self) -> Route:
        first = self.primary_models[0]
        limit = None  # MLflow's Route has one calls limit: the first (token limits are not shown)
        for item in self.limits:
            if item.calls is not None:
                limit = Limit(calls=item.calls, renewal_period=item.renewal_period, key=item.key)
                break
        return Route(
            name=self.name,
            route_type=self.route_type,
            model=first.to_info(),
            route_url=f"{ROUTE_BASE}{self.name}{QUERY_SUFFIX}",
            limit=limit,
            aliases=list(self.aliases) or None,
        )


_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class BudgetConfig(_Strict):
    """``budget: {usd | tokens, period: day | month}``: a key's spend per calendar period (UTC)."""

    usd: float | None = Field(default=None, gt=0)
    tokens: int | None = Field(default=None, gt=0)
    period: Literal["day", "month"]

    @model_validator(mode="after")
    def _one_unit(self) -> BudgetConfig:
        if (self.usd is None) == (self.tokens is None):
            raise ValueError("give exactly one of 'usd' (dollars per period) or 'tokens' (tokens per period)")
        return self

    def build(self, key_name: str) -> Budget:
        if self.usd is not None:
            return Budget(key_name, "usd", round(self.usd * NANO), self.period)
        assert self.tokens is not None
        return Budget(key_name, "tokens", self.tokens, self.period)


class AuthKeyConfig(_Strict):
    name: str
    key: Secret | None = None
    key_sha256: str | None = None
    scopes: list[Literal["query", "admin"]] = Field(default_factory=lambda: ["query"])  # type: ignore[arg-type]
    budget: BudgetConfig | None = None
    limit: list[LimitConfig] | None = None  # counted for this key across every route

    _limit_form = field_validator("limit", mode="before")(lambda value: _limit_list(value))

    @field_validator("limit")
    @classmethod
    def _per_key(cls, value: list[LimitConfig] | None) -> list[LimitConfig] | None:
        for item in value or ():
            if "key" in item.model_fields_set and item.key != "api_key":
                raise ValueError(
                    "a key's own limit counts that key's calls or tokens on every route: "
                    "leave 'key' out (or write key: api_key)"
                )
        return value

    @property
    def limits(self) -> list[LimitConfig]:
        return list(self.limit or ())

    @field_validator("key_sha256")
    @classmethod
    def _hash(cls, value: str | None) -> str | None:
        if value is not None and not _SHA256.match(value.lower()):
            raise ValueError("must be the 64 hex digits of a sha256 hash (sha256sum of the key)")
        return value.lower() if value else value

    @model_validator(mode="after")
    def _one_form(self) -> AuthKeyConfig:
        if (self.key is None) == (self.key_sha256 is None):
            raise ValueError("give exactly one of 'key' ($ENV, file or literal) or 'key_sha256'")
        return self


class AuthConfig(_Strict):
    keys: list[AuthKeyConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> AuthConfig:
        names = [key.name for key in self.keys]
        duplicates = sorted(name for name, count in Counter(names).items() if count > 1)
        if duplicates:
            raise ValueError(f"key names must be unique; repeated: {', '.join(duplicates)}")
        return self


class OtelConfig(_Strict):
    """OpenTelemetry tracing (``gatewayctl[otel]``); ``OTEL_EXPORTER_OTLP_*`` variables work too."""

    endpoint: str  # the OTLP/HTTP base URL (``/v1/traces`` is appended), as OTEL_EXPORTER_OTLP_ENDPOINT
    service_name: str = "gatewayctl"
    sample_ratio: float = Field(default=1.0, ge=0.0, le=1.0)  # of the traces a caller did not sample

    @field_validator("endpoint")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL (OTLP over HTTP)")
        return value


class ServerConfig(_Strict):
    shared_state: str | None = None
    max_request_bytes: int = Field(default=1024 * 1024, gt=0)
    # No cors_origins: browsers are not callers this gateway serves directly (its keys would be in
    # the page). A strict config refuses the key rather than accept one that does nothing.
    # pool: our HTTP/1.1 client (fastest); httpx: proxies from the environment, HTTP/2 (docs/operations.md).
    upstream_transport: Literal["pool", "httpx"] = "pool"
    # The embedded usage store (no shared_state): a SQLite file, relative to the config's folder;
    # default <config>.usage.db beside the config; "memory" keeps usage only while running.
    usage_store: str | None = None
    # Upstream hosts that routes created at run time may reach beyond the providers' public
    # endpoints and the hosts this file names: "host", "host:port", "*.example.com", "*" (trust.py).
    allowed_upstream_hosts: list[str] = Field(default_factory=list)

    @field_validator("allowed_upstream_hosts")
    @classmethod
    def _host_patterns(cls, value: list[str]) -> list[str]:
        for pattern in value:
            if not pattern or "/" in pattern or " " in pattern:
                raise ValueError(
                    f"'{pattern}' is not a host pattern: give 'host', 'host:port' or '*.domain' (no scheme, no path)"
                )
        return value
    otel: OtelConfig | None = None

    @field_validator("shared_state")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis:// (or rediss://, unix://) URL")
        return value


class GatewayConfig(_Strict):
    routes: list[RouteConfig]
    credentials: dict[str, CredentialConfig] = Field(default_factory=dict)
    auth: AuthConfig | None = None
    server: ServerConfig = Field(default_factory=ServerConfig)
    _warnings: list[ConfigIssue] = PrivateAttr(default_factory=list)
    _path: str | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _endpoints_spelling(cls, data: Any) -> Any:
        if isinstance(data, dict) and "endpoints" in data:
            if "routes" in data:
                raise ValueError("give either 'routes' or 'endpoints' (the MLflow 2.9+ spelling), not both")
            data = {("routes" if k == "endpoints" else k): v for k, v in data.items()}
        return data

    @model_validator(mode="after")
    def _unique_names(self) -> GatewayConfig:
        names = [route.name for route in self.routes]
        duplicates = sorted(name for name, count in Counter(names).items() if count > 1)
        if duplicates:
            raise ValueError(
                f"route names must be unique; repeated: {', '.join(duplicates)}{_DUPLICATES_SEEN}"
            )
        clashes = alias_clashes([(route.name, route.aliases) for route in self.routes])
        if clashes:
            raise ValueError("; ".join(message for _, _, message in clashes) + _DUPLICATES_SEEN)
        return self

    @property
    def warnings(self) -> list[ConfigIssue]:
        return self._warnings

    @property
    def path(self) -> str | None:
        return self._path
