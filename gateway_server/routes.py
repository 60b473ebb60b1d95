"""Route types, route-name rules and the public (secret-free) view of a route.

``Route`` / ``ModelInfo`` keep the names of MLflow's ``mlflow.gateway.config`` so code written
against the seed API keeps working. They never hold provider config or secrets.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

__all__ = [
    "MAX_ROUTE_NAME",
    "ROUTE_NAME_PATTERN",
    "Limit",
    "ModelInfo",
    "Route",
    "RouteType",
    "is_valid_route_name",
    "route_name_problem",
]


class RouteType(StrEnum):
    CHAT = "llm/v1/chat"
    COMPLETIONS = "llm/v1/completions"
    EMBEDDINGS = "llm/v1/embeddings"

    def __str__(self) -> str:
        return self.value

    @property
    def kind(self) -> str:
        """``chat``, ``completions`` or ``embeddings``: the last part of the type."""
        return self.value.rsplit("/", 1)[-1]


# MLflow accepts [\w\-\.]+ (its message forgets the dot); we say what we accept. A name is also a
# URL path segment and a metric label: bounded in length, and never only dots ('.' and '..' are
# path segments that proxies and clients rewrite).
ROUTE_NAME_PATTERN = re.compile(r"[A-Za-z0-9_.\-]+")
MAX_ROUTE_NAME = 128


def route_name_problem(name: str) -> str | None:
    """Why ``name`` is not a valid route (or credential) name, or None when it is."""
    if len(name) > MAX_ROUTE_NAME:
        return f"is {len(name)} characters long; a name has at most {MAX_ROUTE_NAME}"
    if not ROUTE_NAME_PATTERN.fullmatch(name):
        return "use letters, digits, '_', '-' and '.' only"
    if name.strip(".") == "":
        return "a name of dots only ('.', '..') is a path segment, not a name; add a letter or digit"
    return None


def is_valid_route_name(name: str) -> bool:
    return route_name_problem(name) is None


class _PublicModel(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class ModelInfo(_PublicModel):
    name: str | None = None
    provider: str


class Limit(_PublicModel):
    calls: int
    renewal_period: str
    key: str | None = None


class Route(_PublicModel):
    """What the gateway says about a route: name, type, model and URL. Never config."""

    name: str
    route_type: RouteType
    model: ModelInfo
    route_url: str
    limit: Limit | None = None
    aliases: list[str] | None = None  # other model names the /v1/* paths accept for this route

    def to_endpoint(self) -> dict[str, Any]:
        """The MLflow 2.9+ spelling of the same object (``endpoint_type``/``endpoint_url``)."""
        return {
            "name": self.name,
            "endpoint_type": self.route_type.value,
            "model": self.model.model_dump(),
            "endpoint_url": self.route_url.replace("/gateway/", "/endpoints/", 1),
            "limit": self.limit.model_dump() if self.limit else None,
            **({"aliases": list(self.aliases)} if self.aliases else {}),
        }
