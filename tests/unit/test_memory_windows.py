"""The in-process sliding-window counter, on a clock the test moves."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from gateway_server.limits import MemoryWindows, RouteLimit
from gateway_server.limits_redis import window_decision


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


LIMIT = RouteLimit.build("chat", calls=10, period_seconds=60, key="route")


def test_admits_the_limit_then_refuses_with_a_time_to_wait() -> None:
    clock = Clock(1000.0)  # 40 s into a 60 s window
    windows = MemoryWindows(clock)
    decisions = [windows.hit(LIMIT, "*") for _ in range(11)]
    assert [d.allowed for d in decisions] == [True] * 10 + [False]
    assert [d.remaining for d in decisions[:3]] == [9, 8, 7] and decisions[-1].remaining == 0
    # The window turns over in 20 s, but its 10 calls then still weigh 10 until 6 s more have passed.
    assert decisions[-1].reset_after == pytest.approx(26.0)
    assert decisions[-1].error().retry_after == 26


@pytest.mark.parametrize("calls", [1, 3, 10])
@pytest.mark.parametrize("start", [960.0, 975.5, 1019.9])
def test_a_client_that_obeys_retry_after_gets_through(calls: int, start: float) -> None:
    """Refused, wait exactly Retry-After, call again: admitted, every time, in every position."""
    limit = RouteLimit.build("chat", calls=calls, period_seconds=60, key="route")
    clock = Clock(start)
    windows = MemoryWindows(clock)
    for _ in range(3):
        while (decision := windows.hit(limit, "*")).allowed:
            pass
        clock.now += decision.error().retry_after
        assert windows.hit(limit, "*").allowed, f"refused again {clock.now - start:.1f} s in"


def test_the_redis_figures_give_the_same_wait() -> None:
    clock = Clock(960.0 + 15)
    windows = MemoryWindows(clock)
    for _ in range(10):
        windows.hit(LIMIT, "*")
    clock.now = 960.0 + 60 + 45  # 10 calls in the previous window, 15 s of it still overlap
    while (ours := windows.hit(LIMIT, "*")).allowed:
        pass
    current = 10 - 3  # 3 calls of the previous window's 10 still weigh (15/60 of 10 = 2.5)
    redis = window_decision(LIMIT, False, [10, 15_000, current, 75_000])
    assert ours.reset_after == pytest.approx(redis.reset_after)


def test_the_previous_window_counts_by_how_much_of_it_still_overlaps() -> None:
    clock = Clock(960.0)  # the start of a window
    windows = MemoryWindows(clock)
    for _ in range(10):
        assert windows.hit(LIMIT, "*").allowed
    clock.now = 960.0 + 60 + 30  # half-way through the next window: the previous 10 weigh 5
    admitted = sum(windows.hit(LIMIT, "*").allowed for _ in range(10))
    assert admitted == 5
    clock.now = 960.0 + 180  # two windows later nothing is left
    assert windows.hit(LIMIT, "*").remaining == 9


def test_keys_and_routes_count_apart() -> None:
    windows = MemoryWindows(Clock())
    other = RouteLimit.build("embeddings", calls=1, period_seconds=1, key="client_ip")
    assert windows.hit(LIMIT, "10.0.0.1").remaining == 9
    assert windows.hit(LIMIT, "10.0.0.2").remaining == 9
    assert windows.hit(other, "10.0.0.1").allowed and not windows.hit(other, "10.0.0.1").allowed


def test_idle_keys_are_dropped_as_the_table_grows() -> None:
    clock = Clock()
    windows = MemoryWindows(clock)
    for client in range(2000):
        windows.hit(LIMIT, f"10.0.{client // 256}.{client % 256}")
    assert len(windows) == 2000
    clock.now += 121  # every one of those windows has passed
    for client in range(2000):
        windows.hit(LIMIT, f"new-{client}")
    assert len(windows) < 2000 + 1100  # swept once the table doubled past the last sweep


def test_memory_and_redis_figures_agree() -> None:
    """The same state read as Redis would give it (counts and key TTLs) decides the same way."""
    clock = Clock(960.0 + 15)
    windows = MemoryWindows(clock)
    for _ in range(4):
        windows.hit(LIMIT, "*")
    clock.now = 960.0 + 60 + 45  # next window, 45 s in: 15 s of the previous one still overlap
    for _ in range(2):
        ours = windows.hit(LIMIT, "*")
    # limits' Redis layout: previous window key TTL = what still overlaps; current key TTL = 2 periods from its start
    redis = window_decision(LIMIT, True, [4, 15_000, 2, 75_000])
    assert (ours.remaining, ours.reset_after) == (redis.remaining, pytest.approx(redis.reset_after))


def test_counting_in_memory_does_not_import_the_limits_package() -> None:
    code = textwrap.dedent(
        """
        import asyncio, sys
        from gateway_server.app_state import GatewayState
        from gateway_server.config import parse_config

        config = parse_config('''
        routes:
          - name: chat
            route_type: llm/v1/chat
            model: {provider: fake}
            limit: {calls: 5, renewal_period: minute}
        ''')
        state = GatewayState.from_config(config)
        entry = state.registry.get("chat")
        decision = asyncio.run(state.limiter.hit(entry.limit, "*"))
        print(decision.remaining, "limits" in sys.modules)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.split() == ["4", "False"]  # ~0.1 s of start-up saved for rate-limited configs
