"""Warnings of a valid config: what loads but is most likely a mistake.

- a literal key spelled like an environment variable's name (``OPENAI_API_KEY``): most likely a
  forgotten ``$``, so the warning says "did you mean '$OPENAI_API_KEY'?".
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel

from gateway_server.config.models import GatewayConfig, Model, RouteConfig
from gateway_server.secrets import Secret, env_name_hint

__all__ = ["config_warnings"]


def config_warnings(config: GatewayConfig, top: str) -> list[tuple[tuple[Any, ...], str]]:
    """Every warning, as (location, message) for the loader to place in the file. (A model whose
    provider lacks the route's type is an error, not a warning: ``loader._route_type_errors``.)"""
    return _env_name_warnings(config, top)


def _model_blocks(route: RouteConfig, loc: tuple[Any, ...]) -> Iterator[tuple[tuple[Any, ...], Model]]:
    if route.model is not None:
        yield (*loc, "model"), route.model
    for key in ("models", "fallbacks"):
        for j, model in enumerate(getattr(route, key) or ()):
            yield (*loc, key, j), model


def _secret_fields(config: BaseModel, loc: tuple[Any, ...]) -> Iterator[tuple[tuple[Any, ...], Secret]]:
    """Every secret of a provider config (nested ones too: Bedrock's aws_config), with its location."""
    for name in type(config).model_fields:
        value = getattr(config, name, None)
        if isinstance(value, Secret):
            yield (*loc, name), value
        elif isinstance(value, BaseModel):
            yield from _secret_fields(value, (*loc, name))


def _env_name_warnings(config: GatewayConfig, top: str) -> list[tuple[tuple[Any, ...], str]]:
    """A literal key spelled like an environment variable's name is most likely a forgotten '$'."""
    blocks: list[tuple[tuple[Any, ...], BaseModel | None]] = [
        (loc, model.config)
        for index, route in enumerate(config.routes)
        for loc, model in _model_blocks(route, (top, index))
        if model.credentials is None  # its keys are the credential's, reported there
    ]
    blocks.extend(
        (("credentials", name), credential.config) for name, credential in config.credentials.items()
    )
    found = []
    for loc, model_config in blocks:
        if model_config is not None:
            for field_loc, secret in _secret_fields(model_config, (*loc, "config")):
                hint = env_name_hint(secret.source) if secret.kind == "literal" else None
                if hint:
                    found.append((field_loc, hint))
    for index, key in enumerate(config.auth.keys if config.auth else ()):
        hint = env_name_hint(key.key.source) if key.key is not None and key.key.kind == "literal" else None
        if hint:
            found.append((("auth", "keys", index, "key"), hint))
    return found
