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

import asyncio
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gateway_server.errors import RateLimitError, SharedStateUnavailableError
from gateway_server.governance import Budget, TokenLimit, budget_period, full_reset, nano_cost, token_figures
from gateway_server.limits import RouteLimit, limit_key
from gateway_server.routes import RouteType
from gateway_server.usage import Price, Usage, completion_reserve, estimate_prompt_tokens
from gateway_server.usage_store import BudgetCheck, WindowCheck

if TYPE_CHECKING:
    from gateway_server.config import AuthConfig
    from gateway_server.limits import RateLimiter
    from gateway_server.registry import RouteEntry

__all__ = ["ANONYMOUS", "Governor", "KeyRules", "Ticket", "key_rules"]

logger = logging.getLogger("gateway_server.usage")

ANONYMOUS = "-"  # the usage key name of a gateway without auth keys
EMBEDDINGS = RouteType.EMBEDDINGS
_SETTLED: tuple[Any, ...] = ()  # a ticket's reservations once settled: a second settle is a no-op


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
    """What admission reserved for one request, to be settled on what it used: once. A settle
    empties it, so a release after a charge (an error raised after the answer was charged) or a
    second release gives nothing back twice."""

    __slots__ = ("budgets", "headers", "windows")

    def __init__(self) -> None:
        self.windows: Sequence[tuple[WindowCheck, int]] = _SETTLED  # (check, window number)
        self.budgets: Sequence[tuple[BudgetCheck, Budget]] = _SETTLED
        self.headers: list[tuple[bytes, bytes]] = []


class Governor:
    """Applies limits and budgets through a store; records usage (see the module docstring)."""

    __slots__ = ("_auth", "_periods", "_priming", "clock", "keys", "limiter", "store")

    def __init__(self, store: Any, limiter: RateLimiter, auth: AuthConfig | None = None) -> None:
        self.store = store
        self.limiter = limiter
        self._auth = auth
        self.keys = key_rules(auth)
        self.clock = time.time
        self._periods: dict[str, tuple[str, float, float]] = {}  # day|month -> (id, start, end)
        # Keys whose budget has not yet been seeded with the spend already recorded in its period
        # (every budget at start-up; one a reload adds or changes): key name -> the seeding, once begun.
        self._priming: dict[str, asyncio.Task[None] | None] = {
            name: None for name, rules in self.keys.items() if rules.budget is not None
        }

    def _period(self, period: str, now: float) -> tuple[str, float, float]:
        """The calendar period holding ``now``, computed once per period (datetime is slow)."""
        held = self._periods.get(period)
        if held is None or not held[1] <= now < held[2]:
            held = self._periods[period] = budget_period(now, period)
        return held

    async def start(self) -> None:
        """Open the store; seed every budget with the spend its key already has in its period."""
        await self.store.start()
        for name in list(self._priming):
            try:
                await self._primed(name)
            except SharedStateUnavailableError:  # Redis down at start-up: seeded on first use
                logger.warning("budget of key '%s': spend not read yet (shared state down)", name)

    async def close(self) -> None:
        await self.store.close()

    def configure(self, auth: AuthConfig | None) -> None:
        """A reloaded config's keys (their limits and budgets apply at once). A budget that is new,
        or counts in another unit or period, starts from the spend its key already has in the
        period (seeded before the key's next admission: :meth:`_primed`)."""
        before = self.keys
        self._auth = auth
        self.keys = key_rules(auth)
        for name, rules in self.keys.items():
            budget = rules.budget
            if budget is None:
                continue
            earlier = before.get(name)
            was = earlier.budget if earlier is not None else None
            if was is None or (was.unit, was.period) != (budget.unit, budget.period):
                self._priming[name] = None

    async def _primed(self, key_name: str) -> None:
        """Seed ``key_name``'s budget counter with its period's recorded spend, once (concurrent
        requests of the key wait for the same seeding); raises what the store raises."""
        task = self._priming.get(key_name)
        if task is None:
            task = asyncio.ensure_future(self._seed(key_name))
            self._priming[key_name] = task
        try:
            await asyncio.shield(task)
        except Exception:
            if self._priming.get(key_name) is task:
                self._priming[key_name] = None  # the next request tries again
            raise
        if self._priming.get(key_name) is task:
            del self._priming[key_name]

    async def _seed(self, key_name: str) -> None:
        rules = self.keys.get(key_name)
        budget = rules.budget if rules is not None else None
        if budget is None:
            return
        now = self.clock()
        period_id, start, end = budget_period(now, budget.period)
        spent = await self.store.spend_since(key_name, budget.unit, start)
        await self.store.seed(budget.counter(period_id), spent, int(end - now) + 86400)

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
        estimate = prompt + completion_reserve(payload, entry.route_type is EMBEDDINGS)
        windows = [
            WindowCheck(limit.counter(who), limit.tokens, limit.period_seconds, estimate)
            for limit, who in limits
        ]
        budgets = []
        now = self.clock()
        end = 0.0
        if budget is not None:
            if self._priming and budget.key_name in self._priming:  # new budget: seed it first, once
                await self._primed(budget.key_name)
                now = self.clock()
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
        """Replace the ticket's reservations by what the answer used (zero when it failed); once:
        the ticket is empty afterwards."""
        if ticket is None or not (ticket.windows or ticket.budgets):
            return
        total = usage.total
        windows = [(check, window, total - check.reserve) for check, window in ticket.windows]
        budgets = [
            (check, budget.charge(usage.prompt, usage.completion, price) - check.reserve)
            for check, budget in ticket.budgets
        ]
        ticket.windows = ticket.budgets = _SETTLED
        await self.store.settle(windows, budgets)

    def release_soon(self, ticket: Ticket | None) -> None:
        """Give back a ticket's reservations without awaiting: for a request being cancelled
        (a second cancel cannot interrupt it). The shared store writes it with its next flush."""
        if ticket is None or not (ticket.windows or ticket.budgets):
            return
        windows = [(check, window, -check.reserve) for check, window in ticket.windows]
        budgets = [(check, -check.reserve) for check, _ in ticket.budgets]
        ticket.windows = ticket.budgets = _SETTLED
        self.store.defer(windows, budgets)

    async def budget_status(self, auth: AuthConfig | None) -> list[dict[str, Any]]:
        """Every key: scopes, budget, what is spent and left, limits (never the key itself)."""
        if auth is not self._auth:
            self.configure(auth)
        for name in [name for name in self._priming if name in self.keys]:
            await self._primed(name)
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
