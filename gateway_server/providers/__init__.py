"""The provider registry: an explicit table from a provider's config name to its adapter class.

Provider names are matched case-insensitively, with ``-`` and ``_`` equivalent (MLflow's rule), so
``Amazon-Bedrock`` and ``amazon_bedrock`` name the same provider. A new provider is one module
with a ``<Vendor>Config`` and a ``<Vendor>Adapter``, and one row of the provider table
(``providers/catalog.py``), which this registry is built from.

The table names each adapter as ``"module:Class"`` and imports a provider's module the first time
the provider is looked up, so a process serving a config that names only ``openai`` never imports
the Bedrock, Gemini or other modules (nor builds their pydantic config models): that is start-up
time and memory. The names themselves are static, so unknown-provider errors still suggest among
every provider without importing any.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, MutableMapping

from gateway_server.providers.base import Adapter, ProviderConfig, UpstreamRequest
from gateway_server.providers.catalog import CATALOG

__all__ = [
    "PROVIDERS",
    "Adapter",
    "ProviderConfig",
    "UpstreamRequest",
    "get_adapter_class",
    "normalize_provider_name",
]


def normalize_provider_name(name: str) -> str:
    return name.strip().lower().replace("-", "_")


# Normalised provider name -> "module:Class" in this package, from the provider table.
_WHERE: dict[str, str] = {spec.key: spec.adapter for spec in CATALOG}


class _Registry(MutableMapping[str, type[Adapter]]):
    """A dict of name -> adapter class whose values are imported on first access."""

    def __init__(self, where: dict[str, str]) -> None:
        self._entries: dict[str, type[Adapter] | str] = dict(where)

    def __getitem__(self, key: str) -> type[Adapter]:
        entry = self._entries[key]
        if isinstance(entry, str):
            module, _, attribute = entry.partition(":")
            entry = getattr(importlib.import_module(f"{__name__}.{module}"), attribute)
            self._entries[key] = entry
        return entry

    def __setitem__(self, key: str, value: type[Adapter]) -> None:
        self._entries[key] = value

    def __delitem__(self, key: str) -> None:
        del self._entries[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"PROVIDERS({', '.join(self._entries)})"


# Keyed by the normalised name; iterating the keys imports nothing, reading a value imports its module.
PROVIDERS: MutableMapping[str, type[Adapter]] = _Registry(_WHERE)

# Other spellings MLflow accepts for the same provider (normalised), from the provider table.
ALIASES: dict[str, str] = {alias: spec.key for spec in CATALOG for alias in spec.aliases}


def get_adapter_class(name: str) -> type[Adapter] | None:
    key = normalize_provider_name(name)
    key = ALIASES.get(key, key)
    return PROVIDERS.get(key)
