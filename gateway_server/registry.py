"""The route index: name -> a ready-to-serve entry.

Everything a request needs that can be computed from the config is computed here, once, when a
route is added: the reliability plan (adapters with their URLs and headers, retry policy, deadline,
breakers), the rate limit, the public views. An index never changes: the route table
(``runtime/table.py``) replaces it as a whole (one assignment, atomic for readers), so a request
keeps the entry it started with.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from gateway_server.breaker import BreakerBoard
from gateway_server.config import RouteConfig
from gateway_server.governance import TokenLimit
from gateway_server.limits import RouteLimit
from gateway_server.providers import Adapter
from gateway_server.reliability import DEFAULT_TIMEOUT_SECONDS, Plan, build_plan
from gateway_server.routes import RouteType
from gateway_server.secrets import Secret
from gateway_server.usage import Price

__all__ = ["DEFAULT_TIMEOUT_SECONDS", "RouteEntry", "RouteIndex", "build_entry"]


@dataclass(frozen=True, slots=True)
class RouteEntry:
    name: str
    route_type: RouteType
    config: RouteConfig
    adapter: Adapter  # the first primary model's (listings, a stream's default model name)
    public: dict[str, Any]
    endpoint: dict[str, Any]
    secrets: tuple[Secret, ...]
    plan: Plan  # every model's adapter, retry policy, deadline, breakers (reliability.py)
    call_limits: tuple[RouteLimit, ...] = ()  # counted by state.limiter (limits.py)
    token_limits: tuple[TokenLimit, ...] = ()  # counted by state.governor (governor.py)
    reserve_price: Price | None = None  # the dearest model's: what a USD budget reserves at admission

    @property
    def governed(self) -> bool:
        """Does a request on this route need admission (a call or token limit)?"""
        return bool(self.call_limits or self.token_limits)

    @property
    def limit(self) -> RouteLimit | None:
        """The first call limit (what a single ``limit: {calls, ...}`` was before lists)."""
        return self.call_limits[0] if self.call_limits else None


def build_entry(route: RouteConfig, breakers: BreakerBoard | None = None) -> RouteEntry:
    plan = build_plan(route, breakers if breakers is not None else BreakerBoard())
    public_route = route.to_route()
    calls, tokens = [], []
    for item in route.limits:
        if item.calls is not None:
            calls.append(RouteLimit.build(route.name, item.calls, item.period_seconds, item.key))
        else:
            assert item.tokens is not None
            tokens.append(TokenLimit.build(f"route:{route.name}", item.tokens, item.period_seconds, item.key))
    prices = [target.price for target in (*plan.primaries, *plan.fallbacks) if target.price is not None]
    reserve_price = None
    if prices:
        reserve_price = Price(max(p.input for p in prices), max(p.output for p in prices))
    return RouteEntry(
        name=route.name,
        route_type=route.route_type,
        config=route,
        adapter=plan.primaries[0].adapter,
        public=public_route.model_dump(mode="json", exclude_none=True),
        endpoint=public_route.to_endpoint(),
        secrets=route.secrets(),
        plan=plan,
        call_limits=tuple(calls),
        token_limits=tuple(tokens),
        reserve_price=reserve_price,
    )


class RouteIndex:
    """An immutable name -> :class:`RouteEntry` table, built from a route list.

    Only :class:`~gateway_server.runtime.RouteTable` builds one (it is the sole writer of the live
    route set); readers hold whichever index they looked up, so a request keeps its entry while a
    newer index replaces this one. Entries of routes that did not change are taken over from
    ``previous``, so creating one route or reloading an unchanged file builds no adapter twice.
    """

    __slots__ = ("_aliases", "_entries")
    _entries: dict[str, RouteEntry]
    _aliases: dict[str, RouteEntry]

    def __init__(
        self,
        routes: Iterable[RouteConfig] = (),
        breakers: BreakerBoard | None = None,
        *,
        previous: RouteIndex | None = None,
    ) -> None:
        # One breaker per upstream model, shared by every index so a change keeps what it learnt.
        board = breakers if breakers is not None else BreakerBoard()
        old = previous._entries if previous is not None else {}
        entries: dict[str, RouteEntry] = {}
        for route in routes:
            entry = old.get(route.name)
            if entry is None or (entry.config is not route and entry.config != route):
                entry = build_entry(route, board)
            entries[route.name] = entry
        self._entries = entries
        # Aliases (other model names the /v1/* paths accept): collisions are refused when a config
        # loads and when a route is created; should a merged overlay still hold one, the first wins.
        aliases: dict[str, RouteEntry] = {}
        for entry in entries.values():
            for alias in entry.config.aliases:
                if alias not in entries:
                    aliases.setdefault(alias, entry)
        self._aliases = aliases

    def get(self, name: str) -> RouteEntry | None:
        return self._entries.get(name)

    def resolve(self, model: str) -> RouteEntry | None:
        """The route a ``/v1/*`` request's ``model`` names: a route name or one of its aliases."""
        entry = self._entries.get(model)
        if entry is None and self._aliases:
            entry = self._aliases.get(model)
        return entry

    def list(self) -> list[RouteEntry]:
        return list(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)
