"""``credentials:``: named upstream credentials, declared only in the config file.

```yaml
credentials:
  openai-prod: {provider: openai, config: {openai_api_key: $OPENAI_API_KEY}}   # base URL: the default
  vllm-lab: {provider: vllm, config: {api_key: /run/secrets/vllm, api_base: "http://10.0.0.7:8000/v1"}}
routes:
  - name: chat
    route_type: llm/v1/chat
    model: {provider: openai, name: gpt-4o-mini, credentials: openai-prod}
```

A credential is a provider's config holding the keys and the base URL (the provider's default when
not given): the key is bound to that base URL. A model that names a credential gets the
credential's config; its own ``config:`` may add the provider's other fields (an Azure API
version, an organization), never a key, a nested block holding keys (Bedrock's ``aws_config``) or
the base URL. File routes and routes created at run time name credentials the same way; that is
how a run-time route uses a key the server holds without being able to send it elsewhere
(docs/security.md).
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from gateway_server.config.models import _did_you_mean
from gateway_server.providers import Adapter, ProviderConfig, get_adapter_class
from gateway_server.routes import route_name_problem
from gateway_server.secrets import Secret

__all__ = ["Credential", "Issues", "merge_credential", "read_credentials"]

Issues = list[tuple[tuple[Any, ...], str]]


@dataclass(frozen=True)
class Credential:
    name: str
    adapter: type[Adapter]
    config: ProviderConfig


def read_credentials(raw: Any, issues: Issues, validate: Any) -> tuple[dict[str, Credential], Any]:
    """Validate the ``credentials:`` mapping; return the credentials by name and the section with
    each config replaced by its validated model (for ``GatewayConfig``). ``validate(loc, adapter,
    config)`` is the loader's located provider-config validation."""
    if raw is None:
        return {}, raw
    if not isinstance(raw, dict):
        issues.append((("credentials",), "must be a mapping: credential name -> {provider, config}"))
        return {}, raw
    found: dict[str, Credential] = {}
    section: dict[Any, Any] = {}
    for name, entry in raw.items():
        loc = ("credentials", name)
        section[name] = entry
        if not isinstance(entry, dict):
            issues.append((loc, "must be a mapping: {provider: ..., config: {...}}"))
            continue
        provider = entry.get("provider")
        adapter = get_adapter_class(provider) if isinstance(provider, str) else None
        # A stand-in config on any problem, so that the section's model reports nothing twice.
        section[name] = {
            **entry,
            "config": (adapter.config_model if adapter else ProviderConfig).model_construct(),
        }
        problem = route_name_problem(name) if isinstance(name, str) else "must be a string"
        if problem is not None:
            issues.append((loc, f"'{str(name)[:40]}' is not a valid credential name: {problem}"))
        elif adapter is not None and adapter.spec.base_field is None:
            issues.append(
                ((*loc, "provider"), f"provider '{provider}' runs in the process: it takes no credentials")
            )
        elif adapter is not None:  # else CredentialConfig reports the provider, as a model's is
            config = validate(loc, adapter, entry.get("config") or {})
            if config is not None:
                found[name] = Credential(name, adapter, config)
                section[name] = {**entry, "config": config}
    return found, section


def merge_credential(
    loc: tuple[Any, ...],
    block: dict[str, Any],
    adapter: type[Adapter],
    credentials: dict[str, Credential],
    issues: Issues,
) -> dict[str, Any] | None:
    """The config input of a model that names a credential: the credential's fields, plus the
    model's own non-secret ones. None (with issues) when the reference or the model's config is wrong."""
    name = block.get("credentials")
    if not isinstance(name, str) or name not in credentials:
        declared = ", ".join(sorted(credentials)) or "none"
        hint = _did_you_mean(str(name), credentials)
        issues.append(
            (
                (*loc, "credentials"),
                f"unknown credential '{name}'{hint} (the config file's credentials: section declares: {declared})",
            )
        )
        return None
    credential = credentials[name]
    if credential.adapter is not adapter:
        issues.append(
            (
                (*loc, "provider"),
                f"credential '{name}' is for provider '{credential.adapter.name}', not '{adapter.name}'",
            )
        )
        return None
    own = block.get("config") or {}
    if not isinstance(own, dict):
        return dict(own_fields(credential.config))  # the config's own type error is reported by the model
    bound = bound_fields(adapter)
    ok = True
    for key in own:
        if key in bound:
            what = "the base URL" if key == (adapter.spec.base_field or "").split(".")[0] else "a key"
            issues.append(
                (
                    (*loc, "config", key),
                    f"{what} comes from credential '{name}', which is bound to its base URL; remove '{key}' "
                    "(or declare another credential)",
                )
            )
            ok = False
    return {**own_fields(credential.config), **own} if ok else None


def own_fields(config: ProviderConfig) -> dict[str, Any]:
    """The fields a config was given (validated values: secrets stay :class:`Secret` objects)."""
    return {name: getattr(config, name) for name in config.model_fields_set}


def bound_fields(adapter: type[Adapter]) -> set[str]:
    """The config fields a credential fixes: every secret, every nested block, and the base URL."""
    fields = set()
    for name, info in adapter.config_model.model_fields.items():
        if _holds(info.annotation, Secret) or _holds(info.annotation, BaseModel):
            fields.add(name)
    if adapter.spec.base_field:
        fields.add(adapter.spec.base_field.split(".")[0])
    return fields


def _holds(annotation: Any, kind: type) -> bool:
    if isinstance(annotation, type):
        return issubclass(annotation, kind)
    return any(_holds(arg, kind) for arg in typing.get_args(annotation))
