"""Token windows, budget spend and usage in Redis (``server.shared_state``), shared by every process.

Same interface and arithmetic as :class:`~gateway_server.usage_store.EmbeddedStore`, so N workers
and replicas admit exactly the configured totals:

- **admission** is one Lua script (:data:`_ADMIT`): read every window and budget of the request,
  refuse at the first that is used up, else add the reservations; one round trip, atomic;
- **settling** replaces the reservations by what the answer used: ``INCRBY`` of each window and
  budget counter (and a fresh ``EXPIRE``) in one ``MULTI`` transaction, one round trip;
- **usage** rows collect in this process and are added to Redis once a second (``HINCRBY`` on one
  hash per hour, kept :data:`USAGE_TTL_DAYS` days), so accounting costs no round trip a request;
  a crash loses at most the last second of usage rows (never budget spend, which is settled at once).

Keys: ``<prefix>:gov:<window counter>:<window number>`` (expire after two periods),
``<prefix>:gov:<budget counter>`` (expire a day after the period ends), ``<prefix>:usage:<hour>``.
Redis not answering at admission is :class:`SharedStateUnavailableError` (503): a governed request
is never admitted unchecked. Not answering when settling or writing usage is logged, and the
figures are kept in this process and written by the next once-a-second write that Redis answers
(redis-py has already retried once on a fresh connection): usage rows as they are, a settle as the
changes it makes to each counter (:meth:`RedisUsageStore.defer`), summed per Redis key and dropped
once that key counts nothing any more (a window two periods old, a budget's period over), so what
is kept is bounded by the live counters. Until then the reservations stand in Redis: admission
errs on the side of refusing. A settle whose reply was lost after Redis had applied it (a timeout
mid-answer) is applied twice, off by that request's reservation minus what it used.

A budget that starts to be enforced (start-up, a reload that adds it) starts from the key's spend
in its period as the usage hashes say (:meth:`RedisUsageStore.spend_since`, :meth:`seed`): usage
written by every process, less what other processes have not written yet (their last second).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from gateway_server.errors import SharedStateUnavailableError
from gateway_server.usage_store import (
    FLUSH_INTERVAL,
    Admission,
    BudgetCheck,
    UsageLedger,
    WindowCheck,
    aggregate,
)

if TYPE_CHECKING:
    from gateway_server.shared import SharedState

__all__ = ["USAGE_TTL_DAYS", "RedisUsageStore"]

logger = logging.getLogger("gateway_server.usage")

USAGE_TTL_DAYS = 400
_SEP = "\x1f"
_LOG_EVERY = 10.0

# KEYS: per window (previous, current), then one per budget.
# ARGV: number of windows; per window: limit, share of the previous window still counted, reserve,
# TTL s; per budget: amount, reserve, TTL s.
# Reply: {-1 or the 0-based index of the refusing check, figures...} (see Admission).
_ADMIT = """
local windows = tonumber(ARGV[1])
local figures = {}
local a = 2
for i = 1, windows do
  local previous = tonumber(redis.call('get', KEYS[2 * i - 1]) or '0')
  local current = tonumber(redis.call('get', KEYS[2 * i]) or '0')
  figures[#figures + 1] = previous
  figures[#figures + 1] = current
  if previous * tonumber(ARGV[a + 1]) + current >= tonumber(ARGV[a]) then
    return {i - 1, unpack(figures)}
  end
  a = a + 4
end
for j = 2 * windows + 1, #KEYS do
  local spent = tonumber(redis.call('get', KEYS[j]) or '0')
  figures[#figures + 1] = spent
  if spent >= tonumber(ARGV[a]) then return {windows + (j - 2 * windows) - 1, unpack(figures)} end
  a = a + 3
end
a = 2
for i = 1, windows do
  redis.call('incrby', KEYS[2 * i], ARGV[a + 2])
  redis.call('expire', KEYS[2 * i], ARGV[a + 3])
  a = a + 4
end
for j = 2 * windows + 1, #KEYS do
  redis.call('incrby', KEYS[j], ARGV[a + 1])
  redis.call('expire', KEYS[j], ARGV[a + 2])
  a = a + 3
end
return {-1, unpack(figures)}
"""

# KEYS[1]: a budget counter; ARGV: spend (from the usage hashes), TTL s. The counter becomes at least
# the spend; one already higher (it holds running requests' reservations) is kept.
_SEED = """
local current = tonumber(redis.call('get', KEYS[1]) or '0')
if tonumber(ARGV[1]) > current then redis.call('set', KEYS[1], ARGV[1]) end
redis.call('expire', KEYS[1], ARGV[2])
return current
"""


def _budget_ttl(budget: BudgetCheck, now: float) -> int:
    """Seconds a budget counter must live: until its period ends, plus a day."""
    return int(budget.ends - now) + 86400


class RedisUsageStore:
    """The shared store (see the module docstring)."""

    shared = True

    def __init__(self, shared: SharedState, *, clock: Any = time.time) -> None:
        self.state = shared
        self.clock = clock
        self.prefix = shared.limits_prefix.rsplit(":", 1)[0]
        self.ledger = UsageLedger()
        self._script: Any = None
        self._task: asyncio.Task[None] | None = None
        self._failed_at = -1e9
        # Settles Redis did not take: Redis key -> [delta, TTL s, UNIX time after which it counts
        # nothing]; written by the next flush that Redis answers (see the module docstring).
        self.unsettled: dict[str, list[int]] = {}

    def _key(self, counter: str) -> str:
        return f"{self.prefix}:gov:{counter}"

    def _errors(self) -> tuple[type[BaseException], ...]:
        from redis import RedisError

        return (RedisError, OSError)

    def _unavailable(self, exc: BaseException, consequence: str) -> SharedStateUnavailableError:
        now = time.monotonic()
        if now - self._failed_at > _LOG_EVERY:  # an outage is one line every few seconds
            self._failed_at = now
            logger.error("%s", self.state.unreachable(exc, consequence))
        return SharedStateUnavailableError(
            "This request is subject to token limits or a budget, and the gateway's shared state "
            "(Redis) did not answer, so it was neither checked nor made. Retry shortly."
        )

    async def admit(
        self, windows: Sequence[WindowCheck], tokens: int, budgets: Sequence[BudgetCheck], units: int
    ) -> Admission:
        """Check and reserve in one script; the hold is the checks and the windows' numbers."""
        now = self.clock()
        keys: list[str] = []
        args: list[Any] = [len(windows)]
        numbers = []
        for check in windows:
            window = int(now // check.period)
            numbers.append(window)
            keys += (self._key(f"{check.counter}:{window - 1}"), self._key(f"{check.counter}:{window}"))
            share = (check.period - (now - window * check.period)) / check.period
            args += (check.limit, repr(share), tokens, 2 * check.period)
        for budget in budgets:
            keys.append(self._key(budget.counter))
            args += (budget.amount, units, _budget_ttl(budget, now))
        if self._script is None:
            self._script = self.state.client.register_script(_ADMIT)
        try:
            reply = await self._script(keys=keys, args=args)
        except self._errors() as exc:
            raise self._unavailable(exc, "requests with token limits or budgets get 503") from None
        refused = int(reply[0])
        return refused, [int(value) for value in reply[1:]], (windows, numbers, budgets) if refused < 0 else None

    async def settle(self, hold: Any, tokens: int, units: int) -> None:
        """``tokens`` more (or fewer) in each window held, ``units`` in each budget: one MULTI."""
        windows, numbers, budgets = hold
        try:
            async with self.state.client.pipeline(transaction=True) as pipe:
                for check, window in zip(windows, numbers, strict=True):
                    key = self._key(f"{check.counter}:{window}")
                    pipe.incrby(key, tokens)
                    pipe.expire(key, 2 * check.period)
                now = self.clock()
                for budget in budgets:
                    key = self._key(budget.counter)
                    pipe.incrby(key, units)
                    pipe.expire(key, _budget_ttl(budget, now))
                await pipe.execute()
        except self._errors() as exc:
            self.defer(hold, tokens, units)
            logger.error("%s", self.state.unreachable(exc, "an answer's settle is kept and written later"))
        except asyncio.CancelledError:  # cancelled mid-way (shutdown): kept, written by the last flush
            self.defer(hold, tokens, units)
            raise

    def defer(self, hold: Any, tokens: int, units: int) -> None:
        """Keep a settle for the next write (no await: a cancelled request's release, a settle
        Redis did not take). Summed per Redis key; each counts until its key counts nothing."""
        windows, numbers, budgets = hold
        unsettled = self.unsettled
        for check, window in zip(windows, numbers, strict=True):
            period = check.period
            self._keep(unsettled, f"{check.counter}:{window}", tokens, 2 * period, (window + 2) * period)
        now = self.clock()
        for budget in budgets:
            ttl = _budget_ttl(budget, now)
            self._keep(unsettled, budget.counter, units, ttl, int(now) + ttl)

    def _keep(self, unsettled: dict[str, list[int]], counter: str, delta: int, ttl: int, until: int) -> None:
        key = self._key(counter)
        held = unsettled.get(key)
        if held is None:
            unsettled[key] = [delta, ttl, until]
        else:
            held[0] += delta

    def _take_unsettled(self) -> dict[str, list[int]]:
        now = self.clock()
        held, self.unsettled = self.unsettled, {}
        return {key: figures for key, figures in held.items() if figures[2] > now and figures[0]}

    async def spent(self, counters: Sequence[str]) -> list[int]:
        if not counters:
            return []
        try:
            values = await self.state.client.mget([self._key(counter) for counter in counters])
        except self._errors() as exc:
            raise self._unavailable(exc, "budgets cannot be read") from None
        return [int(value or 0) for value in values]

    async def _hours(self, first: int, last: int, consequence: str) -> list[dict[bytes, bytes]]:
        """The usage hashes of every hour from ``first`` to ``last``, in one pipelined round trip;
        Redis down is the 503 that says ``consequence``."""
        try:
            async with self.state.client.pipeline(transaction=False) as pipe:
                for hour in range(first, last + 1):
                    pipe.hgetall(f"{self.prefix}:usage:{hour}")
                hours: list[dict[bytes, bytes]] = await pipe.execute()
        except self._errors() as exc:
            raise self._unavailable(exc, consequence) from None
        return hours

    async def usage(self, since: float, by: str) -> list[dict[str, Any]]:
        await self.flush()
        first, last = int(since // 3600), int(self.clock() // 3600)
        hours = await self._hours(first, last, "usage cannot be read")
        rows: dict[tuple[str, str, str], list[int]] = {}
        for fields in hours:
            for field, value in fields.items():
                key, route, model, figure = field.decode().split(_SEP)
                slot = rows.setdefault((key, route, model), [0, 0, 0, 0])
                slot["rpcn".index(figure)] += int(value)
        return aggregate(((*name, *figures) for name, figures in rows.items()), by)

    async def flush(self) -> None:
        """Write the usage rows and the settles in hand in one transaction; kept on failure."""
        pending = self.ledger.take()
        unsettled = self._take_unsettled() if self.unsettled else {}
        if not pending and not unsettled:
            return
        ttl = USAGE_TTL_DAYS * 86400
        try:
            async with self.state.client.pipeline(transaction=True) as pipe:
                for (hour, key, route, model), figures in pending.items():
                    name = f"{self.prefix}:usage:{hour}"
                    base = f"{key}{_SEP}{route}{_SEP}{model}{_SEP}"
                    for letter, value in zip("rpcn", figures, strict=True):
                        if value:
                            pipe.hincrby(name, base + letter, value)
                    pipe.expire(name, ttl)
                for counter, (delta, counter_ttl, _) in unsettled.items():
                    pipe.incrby(counter, delta)
                    pipe.expire(counter, counter_ttl)
                await pipe.execute()
        except BaseException as exc:  # Redis not answering, or cancelled (shutdown): kept
            if not isinstance(exc, (*self._errors(), asyncio.CancelledError)):
                raise
            for row, figures in pending.items():  # kept for the next write
                slot = self.ledger.pending.setdefault(row, [0, 0, 0, 0])
                for i, value in enumerate(figures):
                    slot[i] += value
            for counter, figures in unsettled.items():
                held = self.unsettled.setdefault(counter, [0, figures[1], figures[2]])
                held[0] += figures[0]
            if isinstance(exc, asyncio.CancelledError):
                raise
            logger.error("%s", self.state.unreachable(exc, "usage is kept and written later"))

    async def spend_since(self, key_name: str, unit: str, since: float) -> int:
        """What ``key_name`` spent from the hour holding ``since`` on (nano-dollars or tokens): the
        usage hashes (every process's written rows) plus this process's rows not written yet."""
        first, last = int(since // 3600), int(self.clock() // 3600)
        letters = ("n",) if unit == "usd" else ("p", "c")
        total = 0
        for (hour, name, _, _), (_, prompt, completion, nano) in self.ledger.pending.items():
            if name == key_name and hour >= first:
                total += nano if unit == "usd" else prompt + completion
        prefix = f"{key_name}{_SEP}".encode()
        hours = await self._hours(first, last, "requests with token limits or budgets get 503")
        for fields in hours:
            for field, value in fields.items():
                if field.startswith(prefix) and field.decode().rsplit(_SEP, 1)[1] in letters:
                    total += int(value)
        return total

    async def seed(self, counter: str, spent: int, ttl: int) -> None:
        """The budget counter becomes at least ``spent`` (atomic: :data:`_SEED`)."""
        try:
            await self.state.client.eval(_SEED, 1, self._key(counter), spent, ttl)
        except self._errors() as exc:
            raise self._unavailable(exc, "requests with token limits or budgets get 503") from None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL)
            try:
                await self.flush()
            except Exception:  # the process edge of a background task: log, keep writing
                logger.exception("usage writer failed; will try again")

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="gatewayctl-usage-writer")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()
