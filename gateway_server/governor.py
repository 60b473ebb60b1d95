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
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gateway_server.errors import GatewayError, RateLimitError, SharedStateUnavailableError
from gateway_server.governance import Budget, TokenLimit, budget_period, nano_cost, token_figures
from gateway_server.limits import Decision, RouteLimit, limit_key
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
    empties it (``hold`` None), so a release after a charge (an error raised after the answer was
    charged) or a second release gives nothing back twice."""

    __slots__ = ("headers", "hold", "tokens", "units", "usd")

    def __init__(
        self, headers: list[tuple[bytes, bytes]], hold: Any = None, tokens: int = 0, units: int = 0, usd: bool = False
    ) -> None:
        self.headers = headers
        self.hold = hold  # the store's (usage_store.Admission); None: nothing reserved, or settled
        self.tokens = tokens  # reserved in each token window
        self.units = units  # reserved in the budget, in its units
        self.usd = usd  # the budget counts nano-dollars (else tokens)


class _Plan:
    """What admission checks for one route and key (:meth:`Governor._plan`), made once."""

    __slots__ = (
        "budget",
        "budget_check",
        "calls",
        "entry",
        "per_client",
        "period_from",
        "rates",
        "rules",
        "tokens",
        "usd",
        "windows",
    )

    def __init__(
        self,
        entry: RouteEntry,
        rules: KeyRules | None,
        calls: tuple[tuple[RouteLimit, str | None], ...],
        tokens: tuple[tuple[TokenLimit, WindowCheck | None], ...],
        budget: Budget | None,
    ) -> None:
        self.entry = entry
        self.rules = rules
        self.calls = calls  # (limit, who it counts; None: per client)
        self.tokens = tokens  # (limit, its window check; None: per client, made per request)
        # The window checks when the config fixes every counter (no per-client token limit).
        self.per_client = any(check is None for _, check in tokens)
        self.windows: tuple[WindowCheck, ...] = () if self.per_client else tuple(c for _, c in tokens if c)
        self.budget = budget
        self.budget_check: BudgetCheck | None = None  # the current period's (made on first use)
        self.period_from = 0.0  # when that period began
        self.usd = budget is not None and budget.unit == "usd"  # the budget counts nano-dollars
        # What a prompt and a completion token reserve in the budget (at the route's dearest price).
        self.rates = budget.rates(entry.reserve_price) if budget is not None else (0.0, 0.0)


_MAX_PLANS = 4096


def _fixed_who(kind: str, key_name: str | None) -> str | None:
    """What a limit of ``kind`` counts under when the config alone says it (the whole route, or a
    named gateway key); None when it depends on the request (the client's address, or the bearer
    token of a gateway without keys): then :func:`limit_key` is asked per request."""
    if kind == "client_ip" or (kind == "api_key" and not key_name):
        return None
    return limit_key(kind, {}, key_name)


class Governor:
    """Applies limits and budgets through a store; records usage (see the module docstring)."""

    __slots__ = (
        "_auth",
        "_local",
        "_memory",
        "_periods",
        "_plans",
        "_priming",
        "clock",
        "keys",
        "limiter",
        "store",
    )

    def __init__(self, store: Any, limiter: RateLimiter, auth: AuthConfig | None = None) -> None:
        self.store = store
        self.limiter = limiter
        # In-process counters are read and written without a coroutine per call (a coroutine is
        # the largest single cost of admission here); a shared store (Redis) is awaited.
        self._memory = limiter.memory
        self._local = not store.shared
        self._auth = auth
        self.keys = key_rules(auth)
        self.clock = time.time
        self._periods: dict[str, tuple[str, float, float]] = {}  # day|month -> (id, start, end)
        self._plans: dict[tuple[str, str | None], _Plan] = {}  # (route, key name) -> what to check
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
        self._plans = {}
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
        plan = self._plans.get((entry.name, key_name))
        if plan is None or plan.entry is not entry:
            plan = self._plan(entry, key_name)
        memory = self._memory
        tightest = None  # the call limit with the fewest calls left names the X-RateLimit-* headers
        for call, who in plan.calls:
            if who is None:  # counted per client address: known per request only
                who = limit_key(call.key, scope, key_name)
            decision = memory.hit(call, who) if memory is not None else await self.limiter.hit(call, who)
            if not decision.allowed:
                raise _refused(decision, plan.rules)
            if tightest is None or decision.remaining < tightest.remaining:
                tightest = decision
        headers = tightest.headers() if tightest is not None else []
        limits = plan.tokens
        budget = plan.budget
        if not limits and budget is None:
            return Ticket(headers)
        prompt = estimate_prompt_tokens(payload)
        estimate = prompt + completion_reserve(payload, entry.route_type is EMBEDDINGS)
        # a window counted per client address: its counter is the request's
        windows = _client_windows(limits, scope, key_name) if plan.per_client else plan.windows
        now = self.clock()
        units = 0
        budgets: tuple[BudgetCheck, ...] = ()
        if budget is not None:
            if self._priming and budget.key_name in self._priming:  # new budget: seed it first, once
                await self._primed(budget.key_name)
                now = self.clock()
            check = plan.budget_check
            if check is None or not plan.period_from <= now < check.ends:  # a new plan, or period
                check = self._budget_check(plan, budget, now)
            budgets = (check,)
            per_prompt, per_completion = plan.rates  # budget.charge, inlined
            units = round(prompt * per_prompt + (estimate - prompt) * per_completion)
        store = self.store
        refused, figures, hold = (
            store.admit_now(windows, estimate, budgets, units)
            if self._local  # in-process counters: no coroutine
            else await store.admit(windows, estimate, budgets, units)
        )
        if refused >= 0:
            raise self._refusal(refused, figures, limits, budgets, budget, now)
        if limits:
            headers = headers + _token_headers(limits, figures, estimate, now)
        return Ticket(headers, hold, estimate, units, plan.usd)

    def _budget_check(self, plan: _Plan, budget: Budget, now: float) -> BudgetCheck:
        """The plan's budget check for the period holding ``now`` (made once a period)."""
        period_id, starts, ends = self._period(budget.period, now)
        check = plan.budget_check = BudgetCheck(budget.counter(period_id), budget.amount, ends)
        plan.period_from = starts
        return check

    def _plan(self, entry: RouteEntry, key_name: str | None) -> _Plan:
        """What admission checks for this route and key, with everything the config fixes made
        once: the callers' counters of route-wide and per-key limits (a ``client_ip`` limit's
        depends on the request: None here). Kept until the route or the keys change."""
        rules = self.keys.get(key_name) if key_name is not None else None
        calls: list[tuple[RouteLimit, str | None]] = [
            (call, _fixed_who(call.key, key_name)) for call in entry.call_limits
        ]
        tokens: list[tuple[TokenLimit, WindowCheck | None]] = []
        for limit in entry.token_limits:
            who = _fixed_who(limit.key, key_name)
            tokens.append((limit, None if who is None else _window_check(limit, who)))
        if rules is not None:
            calls += [(call, "*") for call in rules.call_limits]
            tokens += [(limit, _window_check(limit, "*")) for limit in rules.token_limits]
        budget = rules.budget if rules is not None else None
        if len(self._plans) >= _MAX_PLANS:  # routes churned at run time: start the table again
            self._plans.clear()
        plan = self._plans[(entry.name, key_name)] = _Plan(entry, rules, tuple(calls), tuple(tokens), budget)
        return plan

    def _refusal(
        self,
        refused: int,
        figures: list[int],
        limits: Sequence[tuple[TokenLimit, Any]],
        budgets: Sequence[BudgetCheck],
        budget: Budget | None,
        now: float,
    ) -> GatewayError:
        """The 429 of the token window (index ``refused``) or of the budget (after the windows)."""
        if refused < len(limits):
            limit = limits[refused][0]
            used, reset = self._window(limit, figures, refused, now)
            return limit.error(used, reset)
        assert budget is not None
        return budget.error(figures[-1], budgets[0].ends, now)

    @staticmethod
    def _window(limit: TokenLimit, figures: list[int], index: int, now: float) -> tuple[float, float]:
        previous, current = figures[2 * index], figures[2 * index + 1]
        into = now % limit.period_seconds
        return token_figures(previous, current, limit.tokens, into, limit.period_seconds)

    def record(self, key_name: str | None, route: str, model: str, usage: Usage, price: Price | None) -> int:
        """Add one answer to the usage table; returns its cost in nano-dollars."""
        prompt, completion, _ = usage
        # nano_cost, inlined (once per answer)
        nano = 0 if price is None else round(prompt * price.input * 1000 + completion * price.output * 1000)
        self.store.ledger.add((int(self.clock() // 3600), key_name or ANONYMOUS, route, model), prompt, completion, nano)
        return nano

    def charge(
        self, ticket: Ticket | None, key_name: str | None, route: str, served: Any, usage: Usage
    ) -> Awaitable[None] | None:
        """An answer is in: add it to the usage table and settle the ticket on it, at the price of
        the model that ``served`` it (reliability.Target). In-process counters are settled here
        and then; with a shared store, the returned awaitable settles (await it)."""
        nano = self.record(key_name, route, served.label, usage, served.price)
        if ticket is None or ticket.hold is None:
            return None
        tokens = usage.prompt + usage.completion
        if not self._local:
            return self._write(ticket, tokens, nano)
        hold, ticket.hold = ticket.hold, None  # _write, inlined for in-process counters
        self.store.settle_now(hold, tokens - ticket.tokens, (nano if ticket.usd else tokens) - ticket.units)
        return None

    async def settle(self, ticket: Ticket | None, usage: Usage, price: Price | None) -> None:
        """Replace the ticket's reservations by what the answer used (zero when it failed); once:
        the ticket is empty afterwards."""
        if ticket is None or ticket.hold is None:
            return
        nano = nano_cost(usage.prompt, usage.completion, price)
        pending = self._write(ticket, usage.prompt + usage.completion, nano)
        if pending is not None:
            await pending

    def _write(self, ticket: Ticket, tokens: int, nano: int) -> Awaitable[None] | None:
        """Settle ``ticket`` on an answer of ``tokens`` costing ``nano`` nano-dollars, once (the
        ticket is emptied first): in-process counters at once (no coroutine); a shared store's
        write is the returned awaitable."""
        hold, ticket.hold = ticket.hold, None
        units = (nano if ticket.usd else tokens) - ticket.units
        if self._local:
            self.store.settle_now(hold, tokens - ticket.tokens, units)
            return None
        return self.store.settle(hold, tokens - ticket.tokens, units)  # type: ignore[no-any-return]

    def release_soon(self, ticket: Ticket | None) -> None:
        """Give back a ticket's reservations without awaiting: for a request being cancelled
        (a second cancel cannot interrupt it). The shared store writes it with its next flush."""
        if ticket is None or ticket.hold is None:
            return
        hold, ticket.hold = ticket.hold, None
        self.store.defer(hold, -ticket.tokens, -ticket.units)

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


def _window_check(limit: TokenLimit, who: str) -> WindowCheck:
    return WindowCheck(limit.counter(who), limit.tokens, limit.period_seconds)


def _client_windows(
    limits: Sequence[tuple[TokenLimit, WindowCheck | None]], scope: dict[str, Any], key_name: str | None
) -> tuple[WindowCheck, ...]:
    """A plan's window checks with those counted per client address made for this request."""
    return tuple(
        check or _window_check(limit, limit_key(limit.key, scope, key_name)) for limit, check in limits
    )


def _token_headers(
    limits: Sequence[tuple[TokenLimit, Any]], figures: list[int], estimate: int, now: float
) -> list[tuple[bytes, bytes]]:
    """``X-RateLimit-*-Tokens`` of the window with the fewest tokens left, after this request."""
    best = 0
    if len(limits) > 1:
        best_left = math.inf
        for index, (limit, _) in enumerate(limits):
            period = limit.period_seconds
            used = figures[2 * index] * (period - now % period) / period + figures[2 * index + 1]
            if limit.tokens - used < best_left:
                best, best_left = index, limit.tokens - used
    limit = limits[best][0]
    period = limit.period_seconds
    left = period - now % period
    previous, current = figures[2 * best], figures[2 * best + 1]
    # governance.full_reset, inlined (with this request's reservation in the current window)
    if current + estimate:
        return limit.header_pairs(previous * left / period + current, left + period)
    return limit.header_pairs(previous * left / period + current, left if previous else 0.0)


def _refused(decision: Decision, rules: KeyRules | None) -> RateLimitError:
    """The 429 of a call limit, with its ``X-RateLimit-*`` headers: a route's, or a gateway key's
    own (counted on every route)."""
    headers = {k.decode(): v.decode() for k, v in decision.headers()}
    if rules is None or decision.limit not in rules.call_limits:
        error = decision.error()
        error.extra_headers = headers
        return error
    retry = max(1, math.ceil(decision.reset_after))
    return RateLimitError(
        f"Rate limit exceeded for this API key: the key '{rules.name}' allows "
        f"{decision.limit.describe()} on all routes; retry in {retry} s.",
        retry_after=retry,
        extra_headers=headers,
    )
