"""Token windows, calendar budgets, the embedded store and the governance config (pure and in-process)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway_server.config import parse_config
from gateway_server.errors import ConfigError
from gateway_server.governance import (
    NANO,
    Budget,
    TokenLimit,
    budget_period,
    duration_text,
    full_reset,
    nano_cost,
    token_figures,
)
from gateway_server.usage import Price
from gateway_server.usage_store import BudgetCheck, EmbeddedStore, WindowCheck, default_store_path


def _at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def test_token_figures_admit_while_tokens_are_left() -> None:
    assert token_figures(0, 99, 100, 10, 60) == (99, 0.0)
    used, reset = token_figures(0, 100, 100, 10, 60)
    assert used == 100 and reset == pytest.approx(50)  # the window ends; then it counts 100 x share
    used, reset = token_figures(0, 200, 100, 10, 60)
    assert reset == pytest.approx(50 + 30)  # after the turn, 200 x share < 100 once half is gone
    # the previous window's 120 tokens, half still overlapping, plus 40 now: 100 used
    used, reset = token_figures(120, 40, 100, 30, 60)
    assert used == pytest.approx(100) and reset == pytest.approx(0.0)
    used, reset = token_figures(120, 50, 100, 30, 60)
    assert used == pytest.approx(110) and reset == pytest.approx(30 - 50 * 60 / 120)


def test_full_reset_and_openai_durations() -> None:
    assert full_reset(0, 0, 10, 60) == 0
    assert full_reset(5, 0, 10, 60) == 50
    assert full_reset(5, 1, 10, 60) == 110
    assert [duration_text(s) for s in (0.25, 1, 12.2, 90, 7200)] == ["250ms", "1s", "13s", "1m30s", "2h0m0s"]


def test_budget_periods_are_calendar_utc() -> None:
    assert budget_period(_at("2026-12-02T05:00:00"), "day") == (
        "2026-12-02",
        _at("2026-12-02T00:00:00"),
        _at("2026-12-03T00:00:00"),
    )
    assert budget_period(_at("2026-12-31T23:59:59"), "month")[2] == _at("2027-01-01T00:00:00")
    assert budget_period(_at("2028-02-15T12:00:00"), "month") == (
        "2028-02",
        _at("2028-02-01T00:00:00"),
        _at("2028-03-01T00:00:00"),
    )


def test_costs_are_exact_nano_dollars() -> None:
    price = Price(0.15, 0.60)
    assert nano_cost(1_000_000, 0, price) == 150_000_000
    assert sum(nano_cost(7, 3, price) for _ in range(1000)) == nano_cost(7000, 3000, price)
    assert nano_cost(10, 10, None) == 0
    budget = Budget("team", "usd", 50 * NANO, "month")
    assert budget.charge(1000, 1000, price) == 750_000
    assert Budget("bot", "tokens", 100, "day").charge(30, 12, price) == 42


def test_refusals_say_what_and_when() -> None:
    budget = Budget("team-a", "usd", 50 * NANO, "month")
    error = budget.error(50 * NANO + 1, _at("2027-01-01T00:00:00"), _at("2026-12-31T23:00:00"))
    assert error.status_code == 429 and error.error_code == "budget_exceeded"
    assert "the API key 'team-a' has a budget of $50.00 a month (calendar month, UTC)" in error.message
    assert "renews at 2027-01-01 00:00 UTC" in error.message
    assert error.headers()["Retry-After"] == "3600"
    limit = TokenLimit.build("route:chat", 1000, 60, "api_key")
    refused = limit.error(1010, 12.5)
    assert (
        "Token limit exceeded for this API key: route 'chat' allows 1000 tokens per 60 seconds"
        in refused.message
    )
    headers = refused.headers()
    assert headers["X-RateLimit-Remaining-Tokens"] == "0" and headers["X-RateLimit-Reset-Tokens"] == "13s"
    assert headers["Retry-After"] == "13"


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_embedded_store_reserves_settles_and_refuses(tmp_path: Path) -> None:
    clock = Clock(_at("2026-12-02T10:00:00"))
    window = WindowCheck("t|route:chat|*|3600", 100, 3600)
    budget = BudgetCheck("b|team|tokens|2026-12", 90, _at("2027-01-01T00:00:00"))

    async def run() -> None:
        store = EmbeddedStore(str(tmp_path / "usage.db"), clock=clock)
        refused, figures, first = await store.admit([window], 40, [budget], 40)
        assert refused == -1 and figures == [0, 0, 0]
        _, figures, second = await store.admit([window], 40, [budget], 40)  # sees the first's reservation
        assert figures == [0, 40, 40]
        await store.settle(first, 10 - 40, 10 - 40)
        await store.settle(second, 50 - 40, 50 - 40)
        assert await store.spent([budget.counter]) == [60]
        refused, figures, third = await store.admit([window], 40, [budget], 40)
        assert refused == -1 and figures == [0, 60, 60]
        await store.settle(third, 0, 0)
        refused, _, hold = await store.admit([window], 40, [budget], 40)  # 100 tokens: used up
        assert refused == 0 and hold is None
        clock.now += 3600  # the next window: the previous one's 100 count by its overlap
        refused, figures, _ = await store.admit([window._replace(limit=1000)], 40, [budget], 40)
        assert refused == 1 and figures[-1] == 100
        assert store._windows[window.counter][1] == 0  # the window's reservation was given back
        await store.close()

    asyncio.run(run())


def test_a_settle_after_the_window_turned_goes_into_the_previous_window() -> None:
    clock = Clock(_at("2026-12-02T10:59:59"))
    window = WindowCheck("t|route:chat|*|3600", 1000, 3600)

    async def run() -> list[int]:
        store = EmbeddedStore(clock=clock)
        _, _, hold = await store.admit([window], 100, [], 0)
        clock.now += 2  # the next hour: the reservation is in the previous window now
        await store.admit([window], 0, [], 0)
        await store.settle(hold, 30 - 100, 0)
        return store._windows[window.counter][1:3]

    assert asyncio.run(run()) == [0, 30]  # current 0, previous 30


def test_a_new_budget_period_replaces_the_keys_earlier_counter_only() -> None:
    async def run() -> list[str]:
        store = EmbeddedStore()
        for counter in ("b|team|usd|2026-11", "b|team|tokens|2026-11", "b|team|usd|x|2026-11"):
            await store.admit([], 0, [BudgetCheck(counter, 10**9, 0.0)], 5)
        await store.admit([], 0, [BudgetCheck("b|team|usd|2026-12", 10**9, 0.0)], 5)
        return sorted(store._spend)

    # The key 'team|usd' (a name may hold '|') keeps its counter; 'team' in USD has one, the new one.
    assert asyncio.run(run()) == ["b|team|tokens|2026-11", "b|team|usd|2026-12", "b|team|usd|x|2026-11"]


def test_embedded_store_keeps_usage_and_spend_across_a_restart(tmp_path: Path) -> None:
    path = str(tmp_path / "usage.db")
    now = _at("2026-12-02T10:30:00")
    hour = int(now // 3600)

    async def first_run() -> None:
        store = EmbeddedStore(path, clock=lambda: now)
        await store.start()
        store.ledger.add((hour, "team", "chat", "openai/gpt"), 100, 50, 2_000)
        store.ledger.add((hour, "team", "chat", "openai/gpt"), 10, 5, 200)
        store.ledger.add((hour - 24 * 40, "team", "chat", "openai/gpt"), 1, 1, 1)  # two months ago
        await store.close()

    async def second_run() -> None:
        store = EmbeddedStore(path, clock=lambda: now)
        await store.start()
        month = _at("2026-12-01T00:00:00")
        assert await store.spend_since("team", "usd", month) == 2_200
        assert await store.spend_since("team", "tokens", month) == 165
        rows = await store.usage(now - 3600, "model")
        assert rows == [
            {
                "model": "openai/gpt",
                "requests": 2,
                "prompt_tokens": 110,
                "completion_tokens": 55,
                "total_tokens": 165,
                "cost_usd": pytest.approx(2.2e-6),
            }
        ]
        await store.close()

    asyncio.run(first_run())
    asyncio.run(second_run())


def test_store_path_is_beside_the_config(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text("routes: []\n")
    assert default_store_path(str(config), None) == str(tmp_path / "gateway.usage.db")
    assert default_store_path(str(config), "data/u.db") == str(tmp_path / "data/u.db")
    assert default_store_path(str(config), "memory") == ":memory:"
    assert default_store_path(None, None) == ":memory:"
    assert default_store_path(str(tmp_path / "not-a-file.yaml"), None) == ":memory:"


CONFIG = """routes:
  - name: chat
    route_type: llm/v1/chat
    model: {provider: fake, name: m, price: {input: 0.15, output: 0.6}}
    fallbacks:
      - {provider: fake, name: n, price: {input: 1, output: 2}}
    limit:
      - {calls: 600, renewal_period: minute, key: api_key}
      - {tokens: 200000, renewal_period: minute, key: api_key}
  - name: single
    route_type: llm/v1/chat
    model: {provider: fake, name: m}
    limit: {tokens: 50, renewal_period: hour}
auth:
  keys:
    - {name: team-a, key: ka, scopes: [query], budget: {usd: 50, period: month}}
    - {name: ci-bot, key: kb, budget: {tokens: 2000000, period: day}, limit: {tokens: 100000, renewal_period: minute}}
"""


def test_governance_config_shapes() -> None:
    config = parse_config(CONFIG, "gateway.yaml")
    chat, single = config.routes
    assert [(item.calls, item.tokens) for item in chat.limits] == [(600, None), (None, 200000)]
    assert single.limits[0].tokens == 50
    assert chat.fallbacks[0].price is not None and chat.fallbacks[0].price.output == 2
    assert chat.to_route().limit is not None and chat.to_route().limit.calls == 600
    assert single.to_route().limit is None  # MLflow's Route shows calls limits only
    team, bot = config.auth.keys  # type: ignore[union-attr]
    assert team.budget is not None and team.budget.build("team-a").amount == 50 * NANO
    assert bot.limits[0].tokens == 100000


BAD = """routes:
  - name: chat
    route_type: llm/v1/chat
    model: {provider: fake, name: m, price: {input: -1, output: 1}}
    limit: {calls: 5, tokens: 4, renewal_period: minute}
  - name: listed
    route_type: llm/v1/chat
    model: {provider: fake, name: m, price: {input: 1}}
    limit:
      - {calls: 5, renewal_period: minute}
      - {tokenz: 5, renewal_period: minute}
auth:
  keys:
    - {name: a, key: ka, budget: {usd: 5, period: week}}
    - {name: b, key: kb, budget: {period: month}, limit: {tokens: 9, renewal_period: minute, key: client_ip}}
"""


def test_governance_config_errors_name_file_line_route_and_field() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(BAD, "gateway.yaml")
    lines = str(caught.value).splitlines()
    expected = [
        "gateway.yaml:4: route 'chat': model.price.input: must be greater than or equal to 0",
        "gateway.yaml:5: route 'chat': limit: give exactly one of 'calls' (requests per window) "
        "or 'tokens' (tokens per window)",
        "gateway.yaml:8: route 'listed': model.price.output: required field is missing",
        "gateway.yaml:11: route 'listed': limit[1].tokenz: unknown key 'tokenz'; did you mean 'tokens'?",
        "gateway.yaml:14: auth.keys[0].budget.period: must be 'day' or 'month'",
        "gateway.yaml:15: auth.keys[1].budget: give exactly one of 'usd' (dollars per period) "
        "or 'tokens' (tokens per period)",
        "gateway.yaml:15: auth.keys[1].limit: a key's own limit counts that key's calls or tokens on "
        "every route: leave 'key' out (or write key: api_key)",
    ]
    for line in expected:
        assert line in lines, (line, lines)


def test_embedded_store_forgets_windows_that_count_nothing() -> None:
    clock = Clock(_at("2026-12-02T10:00:00"))

    async def run() -> int:
        store = EmbeddedStore(clock=clock)
        for index in range(1000):  # one window per client address, say
            await store.admit([WindowCheck(f"t|route:chat|10.0.{index}|60", 100, 60)], 5, [], 0)
        clock.now += 180  # three windows later every one of them counts nothing
        for index in range(50):  # the table reaches the sweep size: the dead ones go
            await store.admit([WindowCheck(f"t|route:chat|10.1.{index}|60", 100, 60)], 5, [], 0)
        return len(store._windows)

    assert asyncio.run(run()) == 50  # only the live ones
