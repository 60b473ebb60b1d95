"""``gatewayctl routes list | get | create | delete``: the routes of a running gateway."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from gateway_server.errors import ConfigError, ConfigIssue
from gateway_server.routes import RouteType
from gatewayctl._common import DEFAULT_TIMEOUT
from gatewayctl.cli import output
from gatewayctl.cli.options import ApiKey, GatewayUri, Output, Timeout, make_client

__all__ = ["app"]

app = typer.Typer(
    name="routes",
    help="""List, show, create and delete the routes of a running gateway.

    Examples:

    \b
      gatewayctl routes list
      gatewayctl routes create --from-file route.yaml
      gatewayctl routes delete chat --yes
    """,
    no_args_is_help=True,
)


@app.command("list")
def list_routes(
    gateway_uri: GatewayUri = None,
    api_key: ApiKey = None,
    timeout: Timeout = DEFAULT_TIMEOUT,
    output_format: Output = output.OutputFormat.TEXT,
) -> None:
    """List every route of the gateway.

    Examples:

    \b
      gatewayctl routes list --gateway-uri http://127.0.0.1:5000
      gatewayctl routes list -o json | jq -r '.data[].name'
    """
    with make_client(gateway_uri, api_key, timeout) as client:
        routes = client.list_routes()
    if output_format is output.OutputFormat.JSON:
        output.emit_json([output.route_data(route) for route in routes])
    else:
        output.print_routes(routes)


@app.command("get")
def get_route(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Route name.")],
    gateway_uri: GatewayUri = None,
    api_key: ApiKey = None,
    timeout: Timeout = DEFAULT_TIMEOUT,
    output_format: Output = output.OutputFormat.TEXT,
) -> None:
    """Show one route.

    Examples:

    \b
      gatewayctl routes get chat
      gatewayctl routes get chat -o json
    """
    with make_client(gateway_uri, api_key, timeout) as client:
        route = client.get_route(name)
    if output_format is output.OutputFormat.JSON:
        output.emit_json(output.route_data(route))
    else:
        output.print_route(route)


# Config keys that hold a credential (openai_api_key, aws_secret_access_key, hf_token, ...):
# typed literally, the value stays in the shell's history and the process list.
_SECRET_KEY = re.compile(r"(^|_)(key|api_key|key_id|secret|secret_access_key|token|password)$")


def _typed(value: str) -> Any:
    """A --config value as written, except numbers, booleans, null, lists and mappings in JSON
    spelling (0.5, 256, true, null, ["a"]): those keep their type, as they would in the YAML file.
    A quoted JSON string ("256") stays text."""
    try:
        parsed = json.loads(value)
    except ValueError:
        return value
    if isinstance(parsed, float) and not math.isfinite(parsed):  # NaN, Infinity: keep the text
        return value
    return parsed


def _parse_config_pairs(pairs: list[str]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint="--config")
        if _SECRET_KEY.search(key.lower()) and value and not value.startswith("$"):
            output.warn(
                f"--config {key}: a literal secret on the command line stays in your shell history "
                "and the process list. Name a credential of the gateway's config instead "
                "(--credentials NAME; docs/security.md)."
            )
        config[key] = _typed(value)
    return config


def _load_route_file(path: Path) -> dict[str, Any]:
    """One route definition, as in a config's ``routes:`` list (``name`` may come from NAME)."""
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise ConfigError([ConfigIssue(f"not valid YAML: {exc}", path=str(path), line=line)]) from exc
    if not isinstance(loaded, dict):
        raise ConfigError("expected a mapping with route_type and model (one route entry)", path=str(path))
    return loaded


def _route_from_file(name: str | None, path: Path) -> dict[str, Any]:
    """The whole entry of the file (fallbacks, retry, timeout, limit, a ``models`` split, ...),
    sent as written: the gateway validates it exactly as it validates its config file."""
    entry = _load_route_file(path)
    file_name = entry.get("name")
    if name and file_name and name != file_name:
        raise typer.BadParameter(
            f"NAME {name!r} differs from name {file_name!r} in {path}", param_hint="NAME"
        )
    missing = [
        " or ".join(keys)
        for keys in (("route_type",), ("model", "models"))
        if not any(k in entry for k in keys)
    ]
    if "endpoint_type" in entry:  # MLflow 2.9+'s spelling of route_type
        missing = [item for item in missing if item != "route_type"]
    if missing:
        raise ConfigError(f"missing {' and '.join(missing)} (expected one route entry)", path=str(path))
    chosen = name or file_name
    if not chosen:
        raise typer.BadParameter("give NAME, or a name in the file", param_hint="NAME")
    return {"name": str(chosen), **{key: value for key, value in entry.items() if key != "name"}}


def _route_from_options(
    name: str | None,
    route_type: RouteType | None,
    provider: str | None,
    model: str | None,
    config: list[str],
    credentials: str | None = None,
) -> dict[str, Any]:
    needed = {"NAME": name, "--route-type": route_type, "--provider": provider, "--model": model}
    missing = [hint for hint, value in needed.items() if not value]
    if missing:
        raise typer.BadParameter(f"missing {', '.join(missing)} (or use --from-file)")
    assert route_type is not None  # one of the required values checked just above
    block: dict[str, Any] = {"name": model, "provider": provider, "config": _parse_config_pairs(config)}
    if credentials:
        block["credentials"] = credentials
    return {"name": str(name), "route_type": RouteType(route_type).value, "model": block}


@app.command("create")
def create_route(  # noqa: PLR0913 - one parameter per CLI option
    name: Annotated[
        str | None, typer.Argument(metavar="NAME", help="Route name (may come from --from-file).")
    ] = None,
    route_type: Annotated[RouteType | None, typer.Option("--route-type", help="Route type.")] = None,
    provider: Annotated[
        str | None, typer.Option("--provider", metavar="NAME", help="Provider, e.g. openai.")
    ] = None,
    model: Annotated[
        str | None, typer.Option("--model", metavar="NAME", help="Model name at the provider.")
    ] = None,
    config: Annotated[
        list[str] | None,
        typer.Option(
            "--config",
            metavar="KEY=VALUE",
            help="Provider config entry, repeatable; numbers and booleans keep their type. A key is "
            "given as itself: the server refuses $ENV_VAR and paths in routes created at run time "
            "(use --credentials).",
        ),
    ] = None,
    credentials: Annotated[
        str | None,
        typer.Option(
            "--credentials",
            metavar="NAME",
            help="A credential of the server's config file (its credentials: section): its key and base URL.",
        ),
    ] = None,
    from_file: Annotated[
        Path | None,
        typer.Option(
            "--from-file",
            exists=True,
            dir_okay=False,
            metavar="FILE",
            help="YAML/JSON file holding one route entry.",
        ),
    ] = None,
    gateway_uri: GatewayUri = None,
    api_key: ApiKey = None,
    timeout: Timeout = DEFAULT_TIMEOUT,
    output_format: Output = output.OutputFormat.TEXT,
) -> None:
    """Create a route on the gateway (needs an admin key).

    --from-file sends the whole entry as written (fallbacks, retry, timeout, limit, a models
    split...); the gateway validates it as it validates its config file. --config values keep
    JSON types (0.5, 256, true). For the upstream key, name a credential of the gateway's config
    (--credentials) rather than typing the key.

    Examples:

    \b
      gatewayctl routes create chat --route-type llm/v1/chat --provider openai \\
          --model gpt-4o-mini --credentials openai-prod
      gatewayctl routes create --from-file route.yaml
      gatewayctl routes create chat2 --from-file route.yaml -o json
    """
    if from_file is not None:
        if route_type or provider or model or config or credentials:
            raise typer.BadParameter(
                "--from-file cannot be combined with --route-type/--provider/--model/--config/--credentials"
            )
        definition = _route_from_file(name, from_file)
    else:
        definition = _route_from_options(name, route_type, provider, model, config or [], credentials)
    with make_client(gateway_uri, api_key, timeout) as client:
        route = client.create_route(definition)
    if output_format is output.OutputFormat.JSON:
        output.emit_json(output.route_data(route))
    else:
        output.say(f"Created route '{route.name}'.")
        output.print_route(route)


@app.command("delete")
def delete_route(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Route name.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    gateway_uri: GatewayUri = None,
    api_key: ApiKey = None,
    timeout: Timeout = DEFAULT_TIMEOUT,
    output_format: Output = output.OutputFormat.TEXT,
) -> None:
    """Delete a route from the gateway (needs an admin key).

    Examples:

    \b
      gatewayctl routes delete chat
      gatewayctl routes delete chat --yes --api-key "$ADMIN_KEY"
    """
    with make_client(gateway_uri, api_key, timeout) as client:
        if not yes:
            typer.confirm(f"Delete route '{name}' from {client.gateway_uri}?", abort=True, err=True)
        client.delete_route(name)
    if output_format is output.OutputFormat.JSON:
        output.emit_json({"deleted": name})
    else:
        output.say(f"Deleted route '{name}'.")
