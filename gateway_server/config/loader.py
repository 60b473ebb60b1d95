"""Loading the YAML config with located errors: every problem of a file at once, each naming the
file, the line, the route and the field::

    gateway.yaml:7: route 'chat': model.config.openai_api_key: environment variable 'OPENAI_API_KEY' is not set

Loading is two steps: each ``model`` block's provider is resolved and its ``config`` validated by
that provider's own config class (so errors point at ``model.config.<field>``), then the whole
file is validated by the pydantic models of :mod:`gateway_server.config.models`. Loading never
writes ``os.environ`` or globals.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from gateway_server.config.credentials import Credential, Issues, merge_credential, read_credentials
from gateway_server.config.models import (
    _DUPLICATES_SEEN,
    GatewayConfig,
    RouteConfig,
    WeightedModel,
    _did_you_mean,
    alias_clashes,
)
from gateway_server.config.warnings import config_warnings
from gateway_server.errors import ConfigError, ConfigIssue
from gateway_server.providers import Adapter, ProviderConfig, get_adapter_class
from gateway_server.routes import RouteType
from gateway_server.secrets import literal_only
from gateway_server.trust import UpstreamHosts, runtime_model_issues

__all__ = ["load_config", "parse_config", "parse_route"]


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
        raise ConfigError([_yaml_issue(exc, path, text)], path=path) from None
    locator = _Locator(path, lines, data, file_start=1)
    if not isinstance(data, dict):
        locator.fail([((), "the file must be a mapping with a 'routes:' (or 'endpoints:') list")])
    # Top-level x-* keys are the file's own (YAML anchors to reuse, as in docker-compose files).
    data = {key: value for key, value in data.items() if not (isinstance(key, str) and key.startswith("x-"))}
    top = "endpoints" if "endpoints" in data and "routes" not in data else "routes"
    raw_routes = data.get(top)
    issues: list[tuple[tuple[Any, ...], str]] = []
    credentials, section = read_credentials(data.get("credentials"), issues, _validated_config(issues))
    if "credentials" in data:
        data = {**data, "credentials": section}
    scope = _Scope(credentials)
    if isinstance(raw_routes, list):
        data = dict(data)
        data[top] = [_prevalidate_route(i, entry, issues, top, scope) for i, entry in enumerate(raw_routes)]
        issues.extend(_duplicate_names(raw_routes, top))
        issues.extend(_alias_issues(raw_routes, top))
    try:
        config = GatewayConfig.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors(include_url=False, include_input=True):  # enum inputs: did you mean
            loc = _single_limit(_rename_top(tuple(error["loc"]), top), data)
            if not error["msg"].endswith(_DUPLICATES_SEEN):  # already reported per route, with lines
                issues.append((loc, _message(error, loc)))
    else:
        if not issues:
            config._warnings = [locator.issue(loc, msg) for loc, msg in config_warnings(config, top)]
            config._path = path
            return config
    locator.fail(issues)
    raise AssertionError("unreachable")


def parse_route(data: Any, source: str = "<request>", *, base: GatewayConfig | None = None) -> RouteConfig:
    """Validate one route created at run time (admin API, ``create_route``, the shared overlay),
    with the same messages as a file, and the run-time rules (``trust.py``): literal keys or the
    credentials of ``base`` (the served config) only, and upstream hosts that ``base`` allows."""
    issues: list[tuple[tuple[Any, ...], str]] = []
    credentials = _credentials_of(base) if base is not None else {}
    hosts = UpstreamHosts.for_config(base) if base is not None else UpstreamHosts()
    with literal_only():
        prepared = _prevalidate_route(0, data, issues, "routes", _Scope(credentials, hosts))
    try:
        route = RouteConfig.model_validate(prepared)
    except ValidationError as exc:
        for error in exc.errors(include_url=False, include_input=True):
            loc = ("routes", 0, *error["loc"])
            issues.append((loc, _message(error, loc)))
    else:
        if not issues:
            return route
    _Locator(source, {}, {"routes": [data]}).fail(issues)
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class _Scope:
    """What a route is validated against: the file's credentials, and for a route created at run
    time the upstream hosts it may reach (None: a file route, which may reach any host)."""

    credentials: dict[str, Credential]
    runtime_hosts: UpstreamHosts | None = None


def _credentials_of(config: GatewayConfig) -> dict[str, Credential]:
    found = {}
    for name, credential in config.credentials.items():
        adapter = get_adapter_class(credential.provider)
        if adapter is not None:
            found[name] = Credential(name, adapter, credential.config)
    return found


def _validated_config(issues: Issues) -> Any:
    def validate(loc: tuple[Any, ...], adapter: type[Adapter], raw: Any) -> ProviderConfig | None:
        try:
            return adapter.config_model.model_validate(raw)
        except ValidationError as exc:
            for error in exc.errors(include_url=False, include_input=False):
                error_loc = (*loc, "config", *error["loc"])
                issues.append((error_loc, _message(error, error_loc, adapter.config_model)))
            return None

    return validate


def _prevalidate_route(index: int, entry: Any, issues: Issues, top: str, scope: _Scope) -> Any:
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
        new_blocks = [_prevalidate_model(loc, block, issues, scope) for loc, block in blocks]
        entry[key] = new_blocks[0] if key == "model" else new_blocks
        issues.extend(_route_type_errors(entry.get("route_type", entry.get("endpoint_type")), blocks))
    return entry


def _prevalidate_model(loc: tuple[Any, ...], block: Any, issues: Issues, scope: _Scope) -> Any:
    if not isinstance(block, dict):
        return block
    provider = block.get("provider")
    adapter = get_adapter_class(provider) if isinstance(provider, str) else None
    if adapter is None:
        return {k: v for k, v in block.items() if k != "config"}  # the provider error is enough
    # An unvalidated stand-in on error, so the rest of the block is still checked without repeats.
    stand_in = {**block, "config": adapter.config_model.model_construct()}
    named = "credentials" in block
    raw = block.get("config") or {}
    if named:
        raw = merge_credential(loc, block, adapter, scope.credentials, issues)
        if raw is None:
            return stand_in
    config = _validated_config(issues)(loc, adapter, raw)
    if config is None:
        return stand_in
    if scope.runtime_hosts is not None:
        problems = runtime_model_issues(loc, adapter, config, scope.runtime_hosts, named)
        if problems:
            issues.extend(problems)
            return stand_in
    return {**block, "config": config}


def _alias_issues(raw_routes: list[Any], top: str) -> list[tuple[tuple[Any, ...], str]]:
    routes: list[tuple[str, list[str]]] = []
    for entry in raw_routes:
        name = entry.get("name") if isinstance(entry, dict) else None
        aliases = entry.get("aliases") if isinstance(entry, dict) else None
        listed = [alias for alias in aliases if isinstance(alias, str)] if isinstance(aliases, list) else []
        routes.append((name if isinstance(name, str) else "", listed))
    return [
        ((top, index, "aliases", position), message) for index, position, message in alias_clashes(routes)
    ]


def _yaml_issue(exc: yaml.YAMLError, path: str | None, text: str) -> ConfigIssue:
    """Where the YAML went wrong. A quote or bracket never closed is reported where it opens (the
    parser only notices at the end of the file, which says nothing about where to look)."""
    problem = getattr(exc, "problem", None) or str(exc)
    mark = getattr(exc, "problem_mark", None)
    context, opened = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if opened is not None and context and "end of stream" in problem:
        what = "a quoted string" if "quoted scalar" in context else context.removeprefix("while parsing ")
        return ConfigIssue(
            f"not valid YAML: {what} starts here and is never closed", path=path, line=opened.line + 1
        )
    if mark is not None:
        line = mark.line + 1
    elif opened is not None:
        line = opened.line + 1
    else:  # a reader error (a control character, bad encoding): it knows its position only
        line = text.count("\n", 0, getattr(exc, "position", 0) or 0) + 1
    return ConfigIssue(f"not valid YAML: {problem}", path=path, line=line)


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


def _single_limit(loc: tuple[Any, ...], data: Any) -> tuple[Any, ...]:
    """``limit[0].calls`` -> ``limit.calls`` where the file gave one mapping, not a list."""
    if "limit" not in loc:
        return loc
    at = loc.index("limit")
    node = data
    for part in loc[: at + 1]:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return loc
    if isinstance(node, dict) and loc[at + 1 : at + 2] == (0,):
        return loc[: at + 1] + loc[at + 2 :]
    return loc


def _rename_top(loc: tuple[Any, ...], top: str) -> tuple[Any, ...]:
    if loc and loc[0] == "routes" and top != "routes":
        return (top, *loc[1:])
    return loc


def _route_type_errors(
    route_type: Any, blocks: list[tuple[tuple[Any, ...], Any]]
) -> list[tuple[tuple[Any, ...], str]]:
    """A model whose provider lacks the route type could never serve: an error, for the primary
    ``model`` as for fallbacks and split members. (MLflow loads such a route and answers 501 to
    every query; a config that can never work is refused here instead.)"""
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


# ---------------------------------------------------------------- messages


def _message(error: ErrorDetails, loc: tuple[Any, ...], root: type[BaseModel] | None = None) -> str:
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
        expected = error.get("ctx", {}).get("expected", "the allowed values")
        return f"must be one of {expected}{_enum_hint(loc, error.get('input'))}"
    if kind in ("model_type", "dict_type") and _is_model_block(loc):
        value = error.get("input")
        adapter = get_adapter_class(value) if isinstance(value, str) else None
        provider = adapter.name if adapter is not None else "openai"
        said = f"'{value}' is a provider name, but " if adapter is not None else ""
        return (
            f"{said}a model is a mapping of provider, name and config, e.g. "
            f"{{provider: {provider}, name: MODEL-NAME, config: {{...}}}} (see docs/providers.md)"
        )
    if kind in ("model_type", "dict_type"):
        return "must be a mapping (key: value lines, or {key: value})"
    message = error["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            message = message[len(prefix) :]
    return message.replace("Input should be", "must be", 1)


def _is_model_block(loc: tuple[Any, ...]) -> bool:
    return bool(loc) and (
        loc[-1] == "model"
        or (len(loc) >= 2 and loc[-2] in ("models", "fallbacks") and isinstance(loc[-1], int))
    )


def _enum_hint(loc: tuple[Any, ...], value: Any) -> str:
    """'did you mean' for a misspelt route type (the input of an enum error is never a secret)."""
    if not (loc and loc[-1] in ("route_type", "endpoint_type") and isinstance(value, str)):
        return ""
    kinds = {t.value.rsplit("/", 1)[-1]: t.value for t in RouteType}  # compared by their last part
    match = difflib.get_close_matches(value.rsplit("/", 1)[-1].lower(), list(kinds), n=1, cutoff=0.6)
    return f"; did you mean '{kinds[match[0]]}'?" if match else ""


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

    def __init__(
        self, path: str | None, lines: dict[tuple[Any, ...], int], data: Any, file_start: int | None = None
    ) -> None:
        self.path = path
        self.lines = lines
        self.data = data
        self.file_start = file_start  # the line of an issue about a whole file (none for request data)

    def _line(self, loc: tuple[Any, ...]) -> int | None:
        for end in range(len(loc), -1, -1):
            prefix = loc[:end]
            for candidate in (prefix, tuple("endpoint_type" if p == "route_type" else p for p in prefix)):
                if candidate in self.lines:
                    return self.lines[candidate]
        return self.file_start  # about the file as a whole (empty, or not a mapping)

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
        if isinstance(name, str) and len(name) > 40:
            return name[:40] + "..."  # a name too long to be valid is not repeated whole
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
