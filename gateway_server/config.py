"""The YAML config: routes (or MLflow 2.9+ ``endpoints``), optional ``auth:`` and ``server:``.

Strict where MLflow is lax: unknown keys are errors (with a "did you mean"), and every problem of
a file is reported at once, each naming the file, the line, the route and the field::

    gateway.yaml:7: route 'chat': model.config.openai_api_key: environment variable 'OPENAI_API_KEY' is not set

Loading is two steps: each ``model`` block's provider is resolved and its ``config`` validated by
that provider's own config class (so errors point at ``model.config.<field>``), then the whole
file is validated by the pydantic models below. Loading never writes ``os.environ`` or globals.
"""

from __future__ import annotations

import difflib
import re
from collections import Counter
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from gateway_server.errors import ConfigError, ConfigIssue
from gateway_server.providers import PROVIDERS, ProviderConfig, get_adapter_class, normalize_provider_name
from gateway_server.routes import ROUTE_NAME_PATTERN, Limit, ModelInfo, Route, RouteType
from gateway_server.secrets import Secret

__all__ = [
    "AuthConfig",
    "AuthKeyConfig",
    "GatewayConfig",
    "LimitConfig",
    "Model",
    "ModelInfo",
    "OpenAIAPIType",  # noqa: F822 - provided by the module __getattr__ below, on use
    "OpenAIConfig",  # noqa: F822 - provided by the module __getattr__ below, on use
    "Provider",
    "RetryConfig",
    "Route",
    "RouteConfig",
    "RouteType",
    "ServerConfig",
    "WeightedModel",
    "load_config",
    "parse_config",
    "parse_route",
]

ROUTE_BASE = "/gateway/"
QUERY_SUFFIX = "/invocations"

# The seed's ``Provider`` enum, built from the registry so it never goes stale.
Provider = Enum("Provider", {name.upper(): name for name in PROVIDERS}, type=str)  # type: ignore[misc]


def __getattr__(name: str) -> Any:
    """Provider config classes are importable from here, as in MLflow (``config.AnthropicConfig``).

    Looked up on use, so that loading a config imports only the providers it names."""
    if name == "OpenAIAPIType":
        from gateway_server.providers.openai import OpenAIAPIType

        return OpenAIAPIType
    if name.endswith("Config"):  # not for the import system's probes (``__path__``, ...)
        for adapter in PROVIDERS.values():
            if adapter.config_model.__name__ == name:
                return adapter.config_model
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------- models


def _validate_provider_config(provider: str, config: Any) -> ProviderConfig:
    adapter = get_adapter_class(provider)
    assert adapter is not None  # the provider validator ran first
    if isinstance(config, adapter.config_model):
        return config
    return adapter.config_model.model_validate(config if config is not None else {})


class Model(_Strict):
    """``model:``: the provider, the upstream model name, and the provider's own config."""

    provider: str
    name: str | None = None
    config: ProviderConfig | None = None

    @field_validator("provider", mode="before")
    @classmethod
    def _known_provider(cls, value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise ValueError("must be a provider name")
        adapter = get_adapter_class(value)
        if adapter is None:
            hint = _did_you_mean(normalize_provider_name(value), PROVIDERS)
            known = "" if hint else f" (known providers: {', '.join(sorted(PROVIDERS))})"
            raise ValueError(f"unknown provider '{value}'{hint}{known}")
        return adapter.name

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


class WeightedModel(Model):
    """An entry of ``models:`` (traffic split)."""

    weight: float = Field(default=1.0, gt=0)


_PERIOD = re.compile(r"^\s*(\d+)?\s*(second|minute|hour|day)s?\s*$")
_PERIOD_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


class LimitConfig(_Strict):
    """MLflow's ``limit: {calls, renewal_period}`` plus ``key``: what the calls are counted per."""

    calls: int = Field(gt=0)
    renewal_period: str
    key: Literal["route", "client_ip", "api_key"] = "route"

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
    limit: LimitConfig | None = None

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
        if not ROUTE_NAME_PATTERN.fullmatch(value):
            raise ValueError(
                f"'{value}' is not a valid route name: use letters, digits, '_', '-' and '.' only"
            )
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

    def to_route(self) -> Route:
        first = self.primary_models[0]
        limit = None
        if self.limit is not None:
            limit = Limit(
                calls=self.limit.calls, renewal_period=self.limit.renewal_period, key=self.limit.key
            )
        return Route(
            name=self.name,
            route_type=self.route_type,
            model=first.to_info(),
            route_url=f"{ROUTE_BASE}{self.name}{QUERY_SUFFIX}",
            limit=limit,
        )


_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class AuthKeyConfig(_Strict):
    name: str
    key: Secret | None = None
    key_sha256: str | None = None
    scopes: list[Literal["query", "admin"]] = Field(default_factory=lambda: ["query"])

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


class ServerConfig(_Strict):
    shared_state: str | None = None
    max_request_bytes: int = Field(default=1024 * 1024, gt=0)
    cors_origins: list[str] = Field(default_factory=list)

    @field_validator("shared_state")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis:// (or rediss://, unix://) URL")
        return value


class GatewayConfig(_Strict):
    routes: list[RouteConfig]
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
        return self

    @property
    def warnings(self) -> list[ConfigIssue]:
        return self._warnings

    @property
    def path(self) -> str | None:
        return self._path


# ---------------------------------------------------------------- loading with located errors


def load_config(path: str | Path) -> GatewayConfig:
    """Read, validate and return a config file; raise ConfigError listing every problem."""
    path_str = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path_str}", path=path_str) from None
    except OSError as exc:
        raise ConfigError(f"cannot read the config file: {exc.strerror}", path=path_str) from None
    return parse_config(text, path_str)


def parse_config(text: str, path: str | None = None) -> GatewayConfig:
    try:
        data, lines = _read_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(
            [ConfigIssue(f"not valid YAML: {problem}", path=path, line=line)], path=path
        ) from None
    locator = _Locator(path, lines, data)
    if not isinstance(data, dict):
        locator.fail([("", "the file must be a mapping with a 'routes:' (or 'endpoints:') list")])
    top = "endpoints" if "endpoints" in data and "routes" not in data else "routes"
    raw_routes = data.get(top)
    issues: list[tuple[tuple[Any, ...], str]] = []
    if isinstance(raw_routes, list):
        data = dict(data)
        data[top] = [_prevalidate_route(i, entry, issues, top) for i, entry in enumerate(raw_routes)]
        issues.extend(_duplicate_names(raw_routes, top))
    try:
        config = GatewayConfig.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors(include_url=False, include_input=False):
            loc = _rename_top(tuple(error["loc"]), top)
            if not error["msg"].endswith(_DUPLICATES_SEEN):  # already reported per route, with lines
                issues.append((loc, _message(error, loc)))
    else:
        if not issues:
            config._warnings = [locator.issue(loc, msg) for loc, msg in _warnings(config, top)]
            config._path = path
            return config
    locator.fail(issues)
    raise AssertionError("unreachable")


def parse_route(data: Any, source: str = "<request>") -> RouteConfig:
    """Validate one route given as data (``create_route``), with the same messages as a file."""
    issues: list[tuple[tuple[Any, ...], str]] = []
    prepared = _prevalidate_route(0, data, issues, "routes")
    try:
        route = RouteConfig.model_validate(prepared)
    except ValidationError as exc:
        for error in exc.errors(include_url=False, include_input=False):
            loc = ("routes", 0, *error["loc"])
            issues.append((loc, _message(error, loc)))
    else:
        if not issues:
            return route
    _Locator(source, {}, {"routes": [data]}).fail(issues)
    raise AssertionError("unreachable")


def _prevalidate_route(index: int, entry: Any, issues: list[tuple[tuple[Any, ...], str]], top: str) -> Any:
    """Validate each model block's provider config with the provider's own class, in place."""
    if not isinstance(entry, dict):
        return entry
    entry = dict(entry)
    for key in ("model", "models", "fallbacks"):
        value = entry.get(key)
        if key == "model":
            blocks: list[tuple[tuple[Any, ...], Any]] = [((top, index, "model"), value)]
        elif isinstance(value, list):
            blocks = [((top, index, key, j), item) for j, item in enumerate(value)]
        else:
            continue
        new_blocks = [_prevalidate_model(loc, block, issues) for loc, block in blocks]
        entry[key] = new_blocks[0] if key == "model" else new_blocks
        if key != "model":
            issues.extend(_route_type_errors(entry.get("route_type", entry.get("endpoint_type")), blocks))
    return entry


def _prevalidate_model(loc: tuple[Any, ...], block: Any, issues: list[tuple[tuple[Any, ...], str]]) -> Any:
    if not isinstance(block, dict):
        return block
    provider = block.get("provider")
    adapter = get_adapter_class(provider) if isinstance(provider, str) else None
    if adapter is None:
        return {k: v for k, v in block.items() if k != "config"}  # the provider error is enough
    try:
        config = adapter.config_model.model_validate(block.get("config") or {})
    except ValidationError as exc:
        for error in exc.errors(include_url=False, include_input=False):
            error_loc = (*loc, "config", *error["loc"])
            issues.append((error_loc, _message(error, error_loc, adapter.config_model)))
        # An unvalidated stand-in, so the rest of the block is still checked without repeating these.
        return {**block, "config": adapter.config_model.model_construct()}
    return {**block, "config": config}


_DUPLICATES_SEEN = " (each route name must appear once)"


def _duplicate_names(raw_routes: list[Any], top: str) -> list[tuple[tuple[Any, ...], str]]:
    seen: dict[str, int] = {}
    found = []
    for index, entry in enumerate(raw_routes):
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str):
            continue
        if name in seen:
            found.append(
                (
                    (top, index, "name"),
                    f"route name '{name}' is already used by route #{seen[name] + 1}; names must be unique",
                )
            )
        else:
            seen[name] = index
    return found


def _rename_top(loc: tuple[Any, ...], top: str) -> tuple[Any, ...]:
    if loc and loc[0] == "routes" and top != "routes":
        return (top, *loc[1:])
    return loc


def _route_type_errors(
    route_type: Any, blocks: list[tuple[tuple[Any, ...], Any]]
) -> list[tuple[tuple[Any, ...], str]]:
    """A fallback or split member whose provider lacks the route type could never serve: an error.

    (The primary ``model`` keeps MLflow's behaviour: a warning, and queries answer 501.)"""
    try:
        wanted = RouteType(route_type)
    except ValueError:
        return []  # the route_type error is reported on its own
    found = []
    for loc, block in blocks:
        provider = block.get("provider") if isinstance(block, dict) else None
        adapter = get_adapter_class(provider) if isinstance(provider, str) else None
        if adapter is not None and wanted not in adapter.route_types:
            offered = ", ".join(sorted(rt.value for rt in adapter.route_types)) or "nothing"
            found.append(
                (
                    (*loc, "provider"),
                    f"provider '{provider}' does not offer {wanted.value} (it offers {offered}), "
                    "so this model could never serve this route",
                )
            )
    return found


def _warnings(config: GatewayConfig, top: str) -> list[tuple[tuple[Any, ...], str]]:
    found = []
    for index, route in enumerate(config.routes):
        for model in [route.model] if route.model is not None else []:
            adapter = get_adapter_class(model.provider)
            if adapter is not None and route.route_type not in adapter.route_types:
                found.append(
                    (
                        (top, index, "model", "provider"),
                        f"provider '{model.provider}' does not offer {route.route_type.value}; "
                        "queries to this route will answer 501",
                    )
                )
    return found


# ---------------------------------------------------------------- messages


def _did_you_mean(word: str, choices: Any) -> str:
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean '{match[0]}'?" if match else ""


def _message(error: dict[str, Any], loc: tuple[Any, ...], root: type[BaseModel] | None = None) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        allowed = _allowed_keys(root or GatewayConfig, loc, relative=root is not None)
        key = str(loc[-1])
        hint = _did_you_mean(key, allowed)
        listing = f" (allowed: {', '.join(sorted(allowed))})" if allowed and not hint else ""
        return f"unknown key '{key}'{hint}{listing}"
    if kind == "missing":
        return "required field is missing"
    if kind == "string_type":
        return "must be a string (put it in quotes: YAML reads yes, no, on, off and numbers as other types)"
    if kind == "enum":
        return f"must be one of {error.get('ctx', {}).get('expected', 'the allowed values')}"
    message = error["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            message = message[len(prefix) :]
    return message.replace("Input should be", "must be", 1)


def _allowed_keys(root: type[BaseModel], loc: tuple[Any, ...], relative: bool) -> list[str]:
    """The keys the model at ``loc[:-1]`` accepts, found by walking the pydantic classes."""
    path = list(loc[:-1])
    if relative:  # a provider config: loc is (..., "config", field...)
        path = path[path.index("config") + 1 :] if "config" in path else []
    elif path and path[0] == "endpoints":
        path[0] = "routes"
    current: Any = root
    for part in path:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        field = current.model_fields.get("route_type" if part == "endpoint_type" else part)
        if field is None:
            return []
        current = _model_class(field.annotation)
        if part == "models":
            current = WeightedModel
    if isinstance(current, type) and issubclass(current, BaseModel):
        names = list(current.model_fields)
        if current is RouteConfig:
            names.append("endpoint_type")
        if current is GatewayConfig:
            names.append("endpoints")
        return names
    return []


def _model_class(annotation: Any) -> Any:
    while True:
        origin = get_origin(annotation)
        if origin is None:
            return annotation
        if origin is Annotated:
            annotation = get_args(annotation)[0]
            continue
        candidates = [arg for arg in get_args(annotation) if arg is not type(None)]
        if not candidates:
            return None
        annotation = candidates[0]


class _Locator:
    """Turns a pydantic location into file, line, route name and field."""

    def __init__(self, path: str | None, lines: dict[tuple[Any, ...], int], data: Any) -> None:
        self.path = path
        self.lines = lines
        self.data = data

    def _line(self, loc: tuple[Any, ...]) -> int | None:
        for end in range(len(loc), -1, -1):
            prefix = loc[:end]
            for candidate in (prefix, tuple("endpoint_type" if p == "route_type" else p for p in prefix)):
                if candidate in self.lines:
                    return self.lines[candidate]
        return None

    def issue(self, loc: tuple[Any, ...], message: str) -> ConfigIssue:
        route = None
        field_parts: list[Any] = list(loc)
        if len(loc) >= 2 and loc[0] in ("routes", "endpoints") and isinstance(loc[1], int):
            route = self._route_name(loc[0], loc[1])
            field_parts = list(loc[2:])
        field = ""
        for part in field_parts:
            field += f"[{part}]" if isinstance(part, int) else (f".{part}" if field else str(part))
        return ConfigIssue(
            message=message, path=self.path, line=self._line(loc), route=route, field=field or None
        )

    def _route_name(self, top: str, index: int) -> str:
        try:
            name = self.data[top][index].get("name")
        except (AttributeError, IndexError, KeyError, TypeError):
            name = None
        return name if isinstance(name, str) and name else f"#{index + 1}"

    def fail(self, issues: list[tuple[tuple[Any, ...], str]]) -> None:
        located = [self.issue(loc, message) for loc, message in issues]
        located.sort(key=lambda issue: issue.line or 0)
        raise ConfigError(located, path=self.path)


# libyaml's parser when PyYAML was built with it: ~20x faster on configs of thousands of routes.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _read_yaml(text: str) -> tuple[Any, dict[tuple[Any, ...], int]]:
    """Parse once: the data, and the line (1-based) of every mapping key and sequence item."""
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    finally:
        loader.dispose()
    return data, _line_map(root)


def _line_map(root: yaml.Node | None) -> dict[tuple[Any, ...], int]:
    lines: dict[tuple[Any, ...], int] = {}

    def walk(node: yaml.Node, path: tuple[Any, ...]) -> None:
        lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                child = (*path, key.value)
                lines[child] = key.start_mark.line + 1
                walk(value, child)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, (*path, i))

    if root is not None:
        walk(root, ())
    return lines
