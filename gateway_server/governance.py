"""Token limits and budgets: the rules a config declares, and the arithmetic that applies them.

Pure half (no I/O; clocks passed in): :class:`TokenLimit` and :class:`Budget` built once from the
config, the sliding-window figures of a token window (:func:`token_figures`), the calendar period
of a budget (:func:`budget_period`), and the errors and headers of a refusal. The other half,
:class:`~gateway_server.governor.Governor`, asks a store (``usage_store.py``: this process and
SQLite, or Redis) to check and reserve atomically, then settles on what the answer used.

**Token windows** are sliding-window counters, as call limits are (limits.py): the previous
window's tokens count in proportion to how much of it still overlaps the period. A request is
admitted while the window has tokens left (``used < limit``); it then reserves its estimate
(usage.admission_estimate) in the current window, and when the answer is in the reservation is
replaced by the tokens it actually used. So concurrent requests see each other's reservations.

**Budgets** are per gateway key and calendar period (UTC day or month), in USD or tokens. Spend is
kept in integer units (nano-dollars, 1e-9 USD, or tokens) so that adding is exact in every store.
"""

from __future__ import annotations

import calendar
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gateway_server.errors import BudgetExceededError, RateLimitError
from gateway_server.usage import Price

__all__ = [
    "NANO",
    "Budget",
    "TokenLimit",
    "budget_period",
    "duration_text",
    "full_reset",
    "nano_cost",
    "token_figures",
]

NANO = 1_000_000_000  # budget units per USD


def nano_cost(prompt: int, completion: int, price: Price | None) -> int:
    """The cost of ``prompt`` and ``completion`` tokens in nano-dollars (price: USD per 1M tokens)."""
    if price is None:
        return 0
    return round(prompt * price.input * 1000 + completion * price.output * 1000)


@dataclass(frozen=True, slots=True)
class TokenLimit:
    """``{tokens: N, renewal_period, key}`` on a route (``owner`` = "route:<name>") or on a gateway
    key (``owner`` = "key:<name>", counted on every route that key queries)."""

    owner: str
    tokens: int
    period_seconds: int
    key: str  # route | client_ip | api_key (a key's own limit: api_key)
    limit_header: str
    limit_pair: tuple[bytes, bytes]  # the X-RateLimit-Limit-Tokens header, ready to send

    @classmethod
    def build(cls, owner: str, tokens: int, period_seconds: int, key: str) -> TokenLimit:
        return cls(
            owner,
            tokens,
            period_seconds,
            key,
            str(tokens),
            (b"x-ratelimit-limit-tokens", str(tokens).encode()),
        )

    def describe(self) -> str:
        unit = "second" if self.period_seconds == 1 else f"{self.period_seconds} seconds"
        return f"{self.tokens} tokens per {unit}"

    def counter(self, who: str) -> str:
        return f"t|{self.owner}|{who}|{self.period_seconds}"

    def error(self, used: float, reset_after: float) -> RateLimitError:
        kind, name = self.owner.split(":", 1)
        scope = {"route": "", "client_ip": " for this client", "api_key": " for this API key"}[self.key]
        whose = f"route '{name}'" if kind == "route" else f"the API key '{name}'"
        retry = max(1, math.ceil(reset_after))
        return RateLimitError(
            f"Token limit exceeded{scope}: {whose} allows {self.describe()} and {math.floor(used)} "
            f"were used; retry in {retry} s.",
            retry_after=retry,
            extra_headers=self.headers(used, reset_after),
        )

    def header_pairs(self, used: float, reset_after: float) -> list[tuple[bytes, bytes]]:
        """:meth:`headers` as ASGI pairs (the hot path's form; a whole-second reset's text is
        made once and kept)."""
        reset = _RESET_TEXT.get(math.ceil(reset_after)) if reset_after >= 1 else None
        if reset is None:
            reset = duration_text(reset_after).encode()
            if reset_after >= 1:
                if len(_RESET_TEXT) >= 4096:
                    _RESET_TEXT.clear()
                _RESET_TEXT[math.ceil(reset_after)] = reset
        left = self.tokens - math.ceil(used)
        return [
            self.limit_pair,
            (b"x-ratelimit-remaining-tokens", b"%d" % (left if left > 0 else 0)),
            (b"x-ratelimit-reset-tokens", reset),
        ]

    def headers(self, used: float, reset_after: float) -> dict[str, str]:
        """OpenAI's names: ``X-RateLimit-{Limit,Remaining,Reset}-Tokens`` (reset as ``1m30s``)."""
        return {
            "X-RateLimit-Limit-Tokens": self.limit_header,
            "X-RateLimit-Remaining-Tokens": str(max(0, self.tokens - math.ceil(used))),
            "X-RateLimit-Reset-Tokens": duration_text(reset_after),
        }


_RESET_TEXT: dict[int, bytes] = {}  # whole seconds -> duration_text, as bytes


def token_figures(previous: int, current: int, limit: int, into: float, period: int) -> tuple[float, float]:
    """``(tokens used in the sliding window, seconds until it has room again)``.

    ``into`` is how far (s) the clock is into the current window. Used = previous x the share of
    the previous window still inside the period + current. Room comes back when the previous
    window's share has decayed enough, or, if the current window alone is full, once the current
    window has become the previous one and decayed below the limit.
    """
    left = period - into
    used = previous * left / period + current
    if used < limit:
        return used, 0.0
    if current >= limit:
        return used, left + period * (1 - limit / current)
    return used, max(0.0, left - (limit - current) * period / previous)


def full_reset(previous: int, current: int, into: float, period: int) -> float:
    """Seconds until the window counts nothing at all (OpenAI's meaning of the reset header)."""
    left = period - into
    if current:
        return left + period  # the current window becomes the previous one, then slides out
    return left if previous else 0.0


def duration_text(seconds: float) -> str:
    """OpenAI's reset format: ``850ms``, ``12s``, ``1m30s``, ``2h0m0s``."""
    if seconds < 1:
        return f"{max(0, math.ceil(seconds * 1000))}ms"
    whole = math.ceil(seconds)
    if whole < 60:
        return f"{whole}s"
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def budget_period(now: float, period: str) -> tuple[str, float, float]:
    """``(period id, start, end)`` (UNIX times) of the calendar ``day`` or ``month`` (UTC) holding ``now``."""
    moment = datetime.fromtimestamp(now, UTC)
    if period == "day":
        start = moment.replace(hour=0, minute=0, second=0, microsecond=0)
        return start.strftime("%Y-%m-%d"), start.timestamp(), start.timestamp() + 86400
    days = calendar.monthrange(moment.year, moment.month)[1]
    start = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return start.strftime("%Y-%m"), start.timestamp(), start.timestamp() + days * 86400


@dataclass(frozen=True, slots=True)
class Budget:
    """``budget: {usd | tokens, period: day | month}`` of one gateway key."""

    key_name: str
    unit: str  # "usd" | "tokens"
    amount: int  # in units: nano-dollars or tokens
    period: str  # "day" | "month"

    def counter(self, period_id: str) -> str:
        return f"b|{self.key_name}|{self.unit}|{period_id}"

    def describe(self) -> str:
        if self.unit == "usd":
            return f"${self.amount / NANO:,.2f} a {self.period}"
        return f"{self.amount:,} tokens a {self.period}"

    def spent_text(self, spent: int) -> str:
        return f"${spent / NANO:,.4f}" if self.unit == "usd" else f"{spent:,} tokens"

    def rates(self, price: Price | None) -> tuple[float, float]:
        """What a prompt token and a completion token cost this budget, in its units, at ``price``."""
        if self.unit != "usd":
            return 1.0, 1.0
        if price is None:
            return 0.0, 0.0
        return price.input * 1000, price.output * 1000  # USD per million tokens = nano-dollars per token

    def charge(self, prompt: int, completion: int, price: Price | None) -> int:
        """What an answer costs this budget, in its units."""
        per_prompt, per_completion = self.rates(price)
        return round(prompt * per_prompt + completion * per_completion)

    def error(self, spent: int, period_end: float, now: float) -> BudgetExceededError:
        retry = max(1, math.ceil(period_end - now))
        ends = datetime.fromtimestamp(period_end, UTC).strftime("%Y-%m-%d %H:%M UTC")
        return BudgetExceededError(
            f"Budget exceeded: the API key '{self.key_name}' has a budget of {self.describe()} "
            f"(calendar {self.period}, UTC) and has spent {self.spent_text(spent)}; it renews at "
            f"{ends}.",
            retry_after=retry,
        )

    def public(self) -> dict[str, Any]:
        amount: float | int = self.amount / NANO if self.unit == "usd" else self.amount
        return {self.unit: amount, "period": self.period}
