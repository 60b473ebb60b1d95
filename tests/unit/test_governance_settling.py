"""Reservations are settled exactly once, whatever happens between admission and the answer, and a
budget that starts to be enforced starts from the spend its key already has (governor.py with the
embedded store and with a real Redis: usage_store.py, usage_redis.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from gateway_server.config import parse_config
from gateway_server.errors import BudgetExceededError
from gateway_server.governance import TokenLimit
from gateway_server.governor import Governor, Ticket
from gateway_server.limits import RateLimiter
from gateway_server.routes import RouteType
from gateway_server.usage import Price, Usage
from gateway_server.usage_redis import RedisUsageStore
from gateway_server.usage_store import EmbeddedStore

NOW = datetime(2026, 12, 2, 10, 30, tzinfo=UTC).timestamp()
HOUR = int(NOW // 3600)
PAYLOAD = {"messages": [{"role": "user", "content": "x" * 40}], "max_tokens": 500}  # reserves 514
LIMIT = 1000


def _entry() -> Any:
    """What admission reads of a route entry: one token window of LIMIT per hour for the route."""
    return SimpleNamespace(
        name="chat",
        token_limits=(TokenLimit.build("route:chat", LIMIT, 3600, "route"),),
        call_limits=(),
        governed=True,
        reserve_price=None,
        route_type=RouteType.CHAT,
    )


def _unlimited_embeddings() -> Any:
    """A route entry with no limit of its own (only the key's budget applies), embeddings."""
    return SimpleNamespace(
        name="chat",
        token_limits=(),
        call_limits=(),
        governed=False,
        reserve_price=None,
        route_type=RouteType.EMBEDDINGS,
    )


def _auth(budget: str | None) -> Any:
    extra = f", budget: {budget}" if budget else ""
    text = f"""routes: []
auth:
  keys:
    - {{name: team, key: key-team{extra}}}
    - {{name: other, key: key-other}}
"""
    return parse_config(text, "gateway.yaml").auth


def _governor(store: Any, auth: Any = None) -> Governor:
    governor = Governor(store, RateLimiter(), auth)  # no call limits here: an unused limiter
    governor.clock = lambda: NOW
    return governor


def _used(store: EmbeddedStore) -> int:
    """Tokens in the route's current window (reservations included)."""
    return store._windows["t|route:chat|*|3600"][1]


def _run(test: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(test())


def test_a_settled_ticket_is_not_released_again() -> None:
    """An error raised after the answer was charged (a response store failing, a send failing after
    a stream) makes the dispatcher release the ticket: that must not give the reservation back a
    second time (the window would then count less than was used)."""

    async def run() -> None:
        store = EmbeddedStore(clock=lambda: NOW)
        governor = _governor(store)
        ticket = await governor.admit(_entry(), None, {}, dict(PAYLOAD))
        assert _used(store) == 514
        await governor.settle(ticket, Usage(20, 7), None)
        assert _used(store) == 27
        await governor.settle(ticket, Usage(), None)  # the dispatcher's release after a late error
        assert _used(store) == 27
        governor.release_soon(ticket)  # and a cancellation after that
        assert _used(store) == 27

    _run(run)


def test_a_cancelled_request_gives_its_reservation_back_without_awaiting() -> None:
    async def run() -> None:
        store = EmbeddedStore(clock=lambda: NOW)
        governor = _governor(store)
        tickets = [await governor.admit(_entry(), None, {}, dict(PAYLOAD)) for _ in range(2)]
        assert _used(store) == 2 * 514
        governor.release_soon(tickets[0])
        assert _used(store) == 514
        await governor.settle(tickets[1], Usage(), None)
        assert _used(store) == 0
        governor.release_soon(Ticket([]))  # nothing reserved: nothing to give back
        governor.release_soon(None)

    _run(run)


def test_a_responses_api_request_reserves_its_completion() -> None:
    """``/v1/responses`` bodies have ``input`` (like an embeddings body) and ``max_output_tokens``:
    on a chat route they reserve the completion too, not the prompt alone."""

    async def run() -> None:
        store = EmbeddedStore(clock=lambda: NOW)
        governor = _governor(store)
        body = {"input": "x" * 40, "max_output_tokens": 300}
        ticket = await governor.admit(_entry(), None, {}, body)
        assert _used(store) == 10 + 300
        await governor.settle(ticket, Usage(), None)
        await governor.admit(_entry(), None, {}, {"input": "x" * 40})  # no limit given: the default
        assert _used(store) == 10 + 1024

    _run(run)


def _usage_db(path: Path, rows: list[tuple[int, str, int, int, int]]) -> None:
    """A usage table holding (hour, key, prompt, completion, nano$) rows, as an earlier run left it."""

    async def write() -> None:
        store = EmbeddedStore(str(path), clock=lambda: NOW)
        await store.start()
        for hour, key, prompt, completion, nano in rows:
            store.ledger.add((hour, key, "chat", "fake/m"), prompt, completion, nano)
        await store.close()

    _run(write)


def test_a_budget_added_by_a_reload_starts_from_the_spend_already_recorded(tmp_path: Path) -> None:
    path = tmp_path / "usage.db"
    # Before this run: 300 tokens this month, 5000 the month before (not counted).
    _usage_db(path, [(HOUR - 2, "team", 200, 100, 0), (HOUR - 24 * 40, "team", 4000, 1000, 0)])

    async def run() -> None:
        store = EmbeddedStore(str(path), clock=lambda: NOW)
        without = _auth(None)
        governor = _governor(store, without)
        await governor.start()
        # This run, without a budget: 400 tokens, 250 of them already written to the table.
        governor.record("team", "chat", "fake/m", Usage(200, 50), None)
        await store.flush()
        governor.record("team", "chat", "fake/m", Usage(100, 50), None)
        governor.record("other", "chat", "fake/m", Usage(5000, 0), None)  # another key's spend
        entry = _unlimited_embeddings()
        # The reload adds a budget of 1000 tokens a month: 700 are spent, so one more request...
        with_budget = _auth("{tokens: 1000, period: month}")
        assert governor.applies(entry, "team", with_budget)
        ticket = await governor.admit(entry, "team", {}, {"input": "x"})
        await governor.settle(ticket, Usage(250, 100), None)
        # ...and the next is refused: 1050 spent.
        with pytest.raises(BudgetExceededError) as refused:
            await governor.admit(entry, "team", {}, {"input": "x"})
        assert "has spent 1,050 tokens" in refused.value.message
        # What GET /keys shows agrees.
        (team,) = [row for row in await governor.budget_status(with_budget) if row["name"] == "team"]
        assert team["spent"] == 1050 and team["left"] == 0
        # A raise by a later reload keeps counting from there (no second seeding).
        raised = _auth("{tokens: 1100, period: month}")
        governor.configure(raised)
        ticket = await governor.admit(entry, "team", {}, {"input": "x"})
        await governor.settle(ticket, Usage(30, 0), None)
        assert (await store.spent(["b|team|tokens|2026-12"])) == [1080]
        await governor.close()

    _run(run)


def test_a_budget_in_another_unit_after_a_reload_is_seeded_in_that_unit(tmp_path: Path) -> None:
    _usage_db(tmp_path / "usage.db", [(HOUR, "team", 100, 100, 3_000_000_000)])  # $3 before this run

    async def run() -> None:
        store = EmbeddedStore(str(tmp_path / "usage.db"), clock=lambda: NOW)
        governor = _governor(store, _auth("{tokens: 1000000, period: month}"))
        await governor.start()
        entry = _unlimited_embeddings()
        ticket = await governor.admit(entry, "team", {}, {"input": "x"})
        governor.record("team", "chat", "fake/m", Usage(10, 10), None)
        await governor.settle(ticket, Usage(10, 10), None)
        governor.record("team", "chat", "openai/dear", Usage(1000, 1000), Price(1000, 1000))  # $2
        governor.record("team", "chat", "openai/dear", Usage(500, 0), Price(1000, 1000))  # $0.50
        assert governor.applies(entry, "team", _auth("{usd: 5.5, period: month}"))
        with pytest.raises(BudgetExceededError) as refused:  # $5.50 spent
            await governor.admit(entry, "team", {}, {"input": "x"})
        assert "has spent $5.5000" in refused.value.message
        await governor.close()

    _run(run)


# -- with a real Redis ---------------------------------------------------------------------------


class _Failing:
    """Wraps the Redis client: ``pipeline()`` raises ConnectionError ``failures`` times."""

    def __init__(self, client: Any, failures: int) -> None:
        self.client = client
        self.failures = failures

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def pipeline(self, **options: Any) -> Any:
        from redis.exceptions import ConnectionError as RedisConnectionError

        if self.failures:
            self.failures -= 1
            raise RedisConnectionError("Connection refused (test)")
        return self.client.pipeline(**options)


def _redis_store(url: str) -> RedisUsageStore:
    from gateway_server.shared import SharedState

    return RedisUsageStore(SharedState(url, prefix="gw-test"), clock=lambda: NOW)


async def _window(client: Any) -> int:
    value = await client.get(f"gw-test:gov:t|route:chat|*|3600:{HOUR}")
    return int(value or 0)


def test_a_settle_redis_did_not_take_is_written_by_the_next_flush(redis_url: str) -> None:
    async def run() -> None:
        store = _redis_store(redis_url)
        governor = _governor(store)
        ticket = await governor.admit(_entry(), None, {}, dict(PAYLOAD))
        second = await governor.admit(_entry(), None, {}, dict(PAYLOAD))
        assert await _window(store.state.client) == 2 * 514
        healthy = store.state._client
        store.state._client = _Failing(healthy, failures=2)  # type: ignore[assignment]
        await governor.settle(ticket, Usage(20, 7), None)  # Redis down: kept, not lost
        await governor.settle(second, Usage(), None)
        assert await _window(healthy) == 2 * 514  # the reservations still stand in Redis...
        assert sum(figures[0] for figures in store.unsettled.values()) == 27 - 2 * 514
        await store.flush()  # ...until the next write Redis answers
        assert await _window(store.state.client) == 27 and not store.unsettled
        # Cancelled on the way out (shutdown): kept the same way, and written by the final flush.
        third = await governor.admit(_entry(), None, {}, dict(PAYLOAD))
        governor.release_soon(third)
        assert await _window(store.state.client) == 27 + 514
        await store.close()
        assert await _window(store.state.client) == 27
        await store.state.close()

    _run(run)


def test_kept_settles_are_bounded_by_the_live_counters(redis_url: str) -> None:
    async def run() -> None:
        clock = [NOW]
        store = _redis_store(redis_url)
        store.clock = lambda: clock[0]
        governor = _governor(store)
        governor.clock = store.clock
        for _ in range(2):
            ticket = await governor.admit(_entry(), None, {}, dict(PAYLOAD))
            store.defer(ticket.hold, -ticket.tokens, 0)
        assert len(store.unsettled) == 1  # one Redis key, its deltas summed
        clock[0] += 2 * 3600  # that window counts nothing any more: dropped, not written
        await store.flush()
        assert not store.unsettled
        assert await store.state.client.get(f"gw-test:gov:t|route:chat|*|3600:{HOUR}") is not None
        await store.state.close()

    _run(run)


def test_a_budget_added_by_a_reload_starts_from_the_redis_usage(redis_url: str) -> None:
    async def run() -> None:
        earlier = _redis_store(redis_url)  # another process, earlier this month (and last month)
        earlier.ledger.add((HOUR - 5, "team", "chat", "fake/m"), 300, 100, 0)
        earlier.ledger.add((HOUR - 5, "team2", "chat", "fake/m"), 9000, 0, 0)  # a longer name
        earlier.ledger.add((HOUR - 24 * 40, "team", "chat", "fake/m"), 9000, 0, 0)
        await earlier.flush()
        await earlier.state.close()

        store = _redis_store(redis_url)
        governor = _governor(store, _auth(None))
        await governor.start()
        governor.record("team", "chat", "fake/m", Usage(100, 50), None)  # not written yet
        entry = _unlimited_embeddings()
        assert governor.applies(entry, "team", _auth("{tokens: 600, period: month}"))
        ticket = await governor.admit(entry, "team", {}, {"input": "x"})  # 550 spent: admitted
        await governor.settle(ticket, Usage(40, 10), None)
        with pytest.raises(BudgetExceededError) as refused:
            await governor.admit(entry, "team", {}, {"input": "x"})
        assert "has spent 600 tokens" in refused.value.message
        # A second process that starts now seeds from the usage too; the counter, already higher
        # than what the usage hashes say (the last answer is not written yet), is kept.
        other = _redis_store(redis_url)
        again = _governor(other, _auth("{tokens: 600, period: month}"))
        await again.start()
        assert await other.spent(["b|team|tokens|2026-12"]) == [600]
        await again.close()
        await governor.close()
        await store.state.close()
        await other.state.close()

    _run(run)
