"""Admission and settling: call limits, token limits and budgets for one request, and its usage.

The dispatcher (``api/invocations.py``) calls :meth:`Governor.admit` once a request's route and
key are known, for every path family, and :meth:`Governor.settle` once the answer (or the stream)
is over, whatever happened, with what it used and the model that served it, so retries and
fallbacks are charged at the price of the model that answered. A request whose route and key have
no limit or budget skips admission; its usage is still recorded (one dict update).

Order of the checks: call limits (limits.py), then token windows and the budget in one atomic
store operation (usage_store.py / usage_redis.py), which also reserves the request's estimate.
Overshoot of a budget or token window (docs/governance.md): a request is admitted while the
counter, reservations of running requests included, is below the amount; each running request can
go past its reservation only by what its estimate missed (no ``max_tokens``: more than
usage.DEFAULT_COMPLETION_RESERVE completion tokens).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gateway_server.errors import RateLimitError
from gateway_server.governance import Budget, TokenLimit, budget_period, full_reset, nano_cost, token_figures
from gateway_server.limits import RouteLimit, limit_key
from gateway_server.usage import Price, Usage, completion_reserve, estimate_prompt_tokens
from gateway_server.usage_store import BudgetCheck, WindowCheck

if TYPE_CHECKING:
    from gateway_server.config import AuthConfig
    from gateway_server.limits import RateLimiter
    from gateway_server.registry import RouteEntry

__all__ = ["ANONYMOUS", "Governor", "KeyRules", "Ticket", "key_rules"]

ANONYMOUS = "-"  # the usage key name of a gateway without auth keys


@dataclass(frozen=True, slots=True)
class KeyRules:
    """What a gateway key's own ``limit:`` and ``budget:`` say (counted on every route)."""

    name: str
    call_limits: tuple[RouteLimit, ...]
    token_limits: tuple[TokenLimit, ...]
    budget: Budget | None


def key_rules(auth: AuthConfig | None) -> dict[str, KeyRules]:
    """Keys with a limit or a budget, by name."""
    rules: dict[str, KeyRules] = {}
    for key in auth.keys if auth is not None else ():
        calls, tokens = [], []
        for limit in key.limits:
            if limit.calls is not None:
                calls.append(
                    RouteLimit.build(f"key:{key.name}", limit.calls, limit.period_seconds, "api_key")
                )
            else:
                assert limit.tokens is not None
                tokens.append(
                    TokenLimit.build(f"key:{key.name}", limit.tokens, limit.period_seconds, "api_key")
                )
        budget = key.budget.build(key.name) if key.budget is not None else None
        if calls or tokens or budget is not None:
            rules[key.name] = KeyRules(key.name, tuple(calls), tuple(tokens), budget)
    return rules


class Ticket:
    """What admission reserved for one request, to be settled on what it used."""

    __slots__ = ("budgets", "headers", "windows")

    def __init__(self) -> None:
        self.windows: list[tuple[WindowCheck, int]] = []  # (check, window number)
        self.budgets: list[tuple[BudgetCheck, Budget]] = []
        self.headers: list[tuple[bytes, bytes]] = []


class Governor:
    """Applies limits and budgets through a store; records usage (see the module docstring)."""

    __slots__ = ("_auth", "_periods", "clock", "keys", "limiter", "store")

    def __init__(self, store: Any, limiter: RateLimiter, auth: AuthConfig | None = None) -> None:
        self.store = store
        self.limiter = limiter
        self._auth = auth
        self.keys = key_rules(auth)
        self.clock = time.time
        self._periods: dict[str, tuple[str, float, float]] = {}  # day|month -> (id, start, end)

    def _period(self, period: str, now: float) -> tuple[str, float, float]:
        """The calendar period holding ``now``, computed once per period (datetime is slow)."""
        held = self._periods.get(period)
        if held is None or not held[1] <= now < held[2]:
            held = self._periods[period] = budget_period(now, period)
        return held

    async def start(self) -> None:
        """Open the store; the embedded one reads this day's and month's spend from its table."""
        await self.store.start()
        now = self.clock()
        starts = []
        for period in ("day", "month"):
            period_id, start, _ = budget_period(now, period)
            starts.append((period_id, start))
        await self.store.load_spend(starts)

    async def close(self) -> None:
        await self.store.close()

    def configure(self, auth: AuthConfig | None) -> None:
        """A reloaded config's keys (their limits and budgets apply at once)."""
        self._auth = auth
        self.keys = key_rules(auth)

    def applies(self, entry: RouteEntry, key_name: str | None, auth: AuthConfig | None) -> bool:
        """Does this request need admission? ``auth`` is the live config's (a reload or a
        run-time change swaps it: the keys' rules follow on the next request)."""
        if auth is not self._auth:
            self.configure(auth)
        return entry.governed or (key_name is not None and key_name in self.keys)

    async def admit(
        self, entry: RouteEntry, key_name: str | None, scope: dict[str, Any], payload: dict[str, Any]
    ) -> Ticket:
        """Check and reserve; raise the 429 (or 503) that refuses the request."""
        ticket = Ticket()
        rules = self.keys.get(key_name) if key_name is not None else None
        await self._calls(entry, rules, key_name, scope, ticket)
        limits: list[tuple[TokenLimit, str]] = [
            (limit, limit_key(limit.key, scope, key_name)) for limit in entry.token_limits
        ]
        if rules is not None:
            limits += [(limit, "*") for limit in rules.token_limits]
        budget = rules.budget if rules is not None else None
        if not limits and budget is None:
            return ticket
        prompt = estimate_prompt_tokens(payload)
        estimate = prompt + completion_reserve(payload)
        windows = [
            WindowCheck(limit.counter(who), limit.tokens, limit.period_seconds, estimate)
            for limit, who in limits
        ]
        budgets = []
        now = self.clock()
        end = 0.0
        if budget is not None:
            period_id, _, end = self._period(budget.period, now)
            reserve = budget.charge(prompt, estimate - prompt, entry.reserve_price)
            budgets.append(
                BudgetCheck(budget.counter(period_id), budget.amount, reserve, int(end - now) + 86400)
            )
        admission = await self.store.admit(windows, budgets)
        figures = admission.figures
        if 0 <= admission.refused < len(windows):
            limit = limits[admission.refused][0]
            used, reset = self._window(limit, figures, admission.refused, now)
            raise limit.error(used, reset)
        if admission.refused >= 0:
            assert budget is not None
            raise budget.error(figures[-1], end, now)
        best = -1  # the tightest window names the X-RateLimit-*-Tokens figures
        best_left = best_used = 0.0
        for index, (limit, _) in enumerate(limits):
            period = limit.period_seconds
            used = figures[2 * index] * (period - now % period) / period + figures[2 * index + 1]
            left = limit.tokens - used
            if best < 0 or left < best_left:
                best, best_left, best_used = index, left, used
        if best >= 0:
            limit = limits[best][0]
            period = limit.period_seconds
            reset = full_reset(figures[2 * best], figures[2 * best + 1] + estimate, now % period, period)
            ticket.headers = ticket.headers + limit.header_pairs(best_used, reset)
        ticket.windows = list(zip(windows, admission.window, strict=True))
        ticket.budgets = list(zip(budgets, [budget] if budget is not None else [], strict=True))
        return ticket

    @staticmethod
    def _window(limit: TokenLimit, figures: list[int], index: int, now: float) -> tuple[float, float]:
        previous, current = figures[2 * index], figures[2 * index + 1]
        into = now % limit.period_seconds
        return token_figures(previous, current, limit.tokens, into, limit.period_seconds)

    async def _calls(
        self,
        entry: RouteEntry,
        rules: KeyRules | None,
        key_name: str | None,
        scope: dict[str, Any],
        ticket: Ticket,
    ) -> None:
        tightest = None
        for limit in entry.call_limits:
            decision = await self.limiter.hit(limit, limit_key(limit.key, scope, key_name))
            if not decision.allowed:
                ticket.headers = decision.headers()
                error = decision.error()
                error.extra_headers = dict((k.decode(), v.decode()) for k, v in ticket.headers)
                raise error
            if tightest is None or decision.remaining < tightest.remaining:
                tightest = decision
        for limit in rules.call_limits if rules is not None else ():
            decision = await self.limiter.hit(limit, "*")
            if not decision.allowed:
                retry = max(1, math.ceil(decision.reset_after))
                raise RateLimitError(
                    f"Rate limit exceeded for this API key: the key '{rules.name}' allows "  # type: ignore[union-attr]
                    f"{limit.describe()} on all routes; retry in {retry} s.",
                    retry_after=retry,
                    extra_headers={k.decode(): v.decode() for k, v in decision.headers()},
                )
            if tightest is None or decision.remaining < tightest.remaining:
                tightest = decision
        if tightest is not None:
            ticket.headers = tightest.headers()

    def record(self, key_name: str | None, route: str, model: str, usage: Usage, price: Price | None) -> int:
        """Add one answer to the usage table; returns its cost in nano-dollars."""
        nano = nano_cost(usage.prompt, usage.completion, price)
        hour = int(self.clock() // 3600)
        self.store.ledger.add(
            (hour, key_name or ANONYMOUS, route, model), usage.prompt, usage.completion, nano
        )
        return nano

    async def settle(self, ticket: Ticket | None, usage: Usage, price: Price | None) -> None:
        """Replace the ticket's reservations by what the answer used (zero when it failed)."""
        if ticket is None or not (ticket.windows or ticket.budgets):
            return
        total = usage.total
        windows = [(check, window, total - check.reserve) for check, window in ticket.windows]
        budgets = [
            (check, budget.charge(usage.prompt, usage.completion, price) - check.reserve)
            for check, budget in ticket.budgets
        ]
        await self.store.settle(windows, budgets)

    async def budget_status(self, auth: AuthConfig | None) -> list[dict[str, Any]]:
        """Every key: scopes, budget, what is spent and left, limits (never the key itself)."""
        now = self.clock()
        rows, counters = [], []
        for key in auth.keys if auth is not None else ():
            rules = self.keys.get(key.name)
            row: dict[str, Any] = {"name": key.name, "scopes": list(key.scopes), "budget": None, "limits": []}
            row["limits"] = [limit.public() for limit in key.limits]
            if rules is not None and rules.budget is not None:
                period_id, _, end = budget_period(now, rules.budget.period)
                row["budget"] = rules.budget.public()
                row["_budget"] = (rules.budget, end)
                counters.append(rules.budget.counter(period_id))
            rows.append(row)
        spent = iter(await self.store.spent(counters))
        for row in rows:
            held = row.pop("_budget", None)
            if held is None:
                continue
            budget, end = held
            value = next(spent)
            scale = 1e9 if budget.unit == "usd" else 1
            row["spent"] = value / scale
            row["left"] = max(0, budget.amount - value) / scale
            row["renews_at"] = int(end)
        return rows
