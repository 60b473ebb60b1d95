"""Where token windows, budget spend and usage live without Redis: this process, plus SQLite.

The embedded store needs nothing installed or started. Token windows and budget counters are
dicts in this process (checked and changed between two awaits, so atomic on the one event loop;
without ``server.shared_state`` the server refuses ``--workers > 1`` when any are configured).
Usage (requests, prompt and completion tokens, cost, per hour x key x route x model) collects in
memory and is written to SQLite once a second, in one transaction, on a thread of its own:

- **durability**: WAL journal, ``synchronous=NORMAL``: a committed transaction survives the
  process being killed (SIGKILL), so at most the last second of usage is lost; a power cut may
  lose the last transactions too (documented in docs/governance.md);
- **budgets survive restarts** because spend is usage: when a budget starts to be enforced (at
  start-up, or when a reload adds it or changes its unit or period) the key's spend in the current
  period is summed from the table and the rows not yet written (:meth:`EmbeddedStore.spend_since`),
  and the budget's counter starts from that (:meth:`EmbeddedStore.seed`); charges add to it;
- the file sits next to the config (``<config>.usage.db``), or where ``server.usage_store``
  says; ``memory`` (or a config that is not a file) keeps everything in memory, lost at exit.

Cost of a write: measured in docs/performance.md (a one-second batch of upserts is well under a
millisecond of the writer thread per few hundred distinct rows, off the event loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

__all__ = [
    "FLUSH_INTERVAL",
    "Admission",
    "BudgetCheck",
    "EmbeddedStore",
    "UsageLedger",
    "WindowCheck",
    "aggregate",
    "default_store_path",
]

logger = logging.getLogger("gateway_server.usage")

FLUSH_INTERVAL = 1.0  # seconds between two writes of usage: what a SIGKILL may lose
BY = ("key", "route", "model")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS usage (
    hour INTEGER NOT NULL, key TEXT NOT NULL, route TEXT NOT NULL, model TEXT NOT NULL,
    requests INTEGER NOT NULL, prompt INTEGER NOT NULL, completion INTEGER NOT NULL,
    cost_nano INTEGER NOT NULL,
    PRIMARY KEY (hour, key, route, model)
) WITHOUT ROWID
"""
_UPSERT = """
INSERT INTO usage VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (hour, key, route, model) DO UPDATE SET
    requests = requests + excluded.requests, prompt = prompt + excluded.prompt,
    completion = completion + excluded.completion, cost_nano = cost_nano + excluded.cost_nano
"""


class WindowCheck(NamedTuple):
    """A token window to check: made once per route and key where the config fixes its counter."""

    counter: str  # TokenLimit.counter(who)
    limit: int
    period: int


class BudgetCheck(NamedTuple):
    """A budget to check: made once per key and period."""

    counter: str  # Budget.counter(period id)
    amount: int
    ends: float  # UNIX time the period ends (a Redis counter outlives it by a day)


# What a store's ``admit`` returns: ``(refused, figures, hold)``. ``refused`` is -1 when admitted
# (and reserved), else the index of the refusing check (windows first); ``figures`` are, per window,
# (previous, current), then per budget its spend, up to the refusing check; ``hold`` is what
# settling needs, the store's own (None when refused). A plain tuple: one is made per request.
Admission = tuple[int, list[int], Any]


Row = tuple[int, str, str, str]  # hour, key, route, model


class UsageLedger:
    """Usage not yet written: (hour, key, route, model) -> [requests, prompt, completion, nano$]."""

    __slots__ = ("pending",)

    def __init__(self) -> None:
        self.pending: dict[Row, list[int]] = {}

    def add(self, row: Row, prompt: int, completion: int, nano: int) -> None:
        slot = self.pending.get(row)
        if slot is None:
            self.pending[row] = [1, prompt, completion, nano]
        else:
            slot[0] += 1
            slot[1] += prompt
            slot[2] += completion
            slot[3] += nano

    def take(self) -> dict[Row, list[int]]:
        pending, self.pending = self.pending, {}
        return pending


def aggregate(rows: Iterable[Sequence[Any]], by: str) -> list[dict[str, Any]]:
    """Rows of (key, route, model, requests, prompt, completion, nano$) summed per ``by``, by cost."""
    index = BY.index(by)
    sums: dict[str, list[int]] = {}
    for row in rows:
        slot = sums.setdefault(str(row[index]), [0, 0, 0, 0])
        for i in range(4):
            slot[i] += int(row[3 + i])
    out: list[dict[str, Any]] = [
        {
            by: name,
            "requests": s[0],
            "prompt_tokens": s[1],
            "completion_tokens": s[2],
            "total_tokens": s[1] + s[2],
            "cost_usd": s[3] / 1e9,
        }
        for name, s in sums.items()
    ]
    out.sort(key=lambda item: (-item["cost_usd"], -item["total_tokens"], item[by]))
    return out


def default_store_path(config_path: str | None, setting: str | None) -> str:
    """The SQLite file for a config: ``server.usage_store``, else ``<config>.usage.db`` beside it."""
    if setting:
        if setting == "memory":
            return ":memory:"
        base = Path(config_path).parent if config_path else Path.cwd()
        return str(base / Path(setting).expanduser())
    if not config_path or not Path(config_path).is_file():  # a config not read from a file
        return ":memory:"
    path = Path(config_path)
    return str(path.with_name(path.name.rsplit(".", 1)[0] + ".usage.db"))


_MIN_SWEEP = 1024


class EmbeddedStore:
    """Token windows and budgets in this process; usage in SQLite (see the module docstring)."""

    shared = False

    def __init__(self, path: str = ":memory:", *, clock: Any = time.time) -> None:
        self.path = path
        self.clock = clock
        self.ledger = UsageLedger()
        self._windows: dict[str, list[Any]] = {}  # counter -> [window, current, previous, period]
        self._sweep_at = _MIN_SWEEP
        self._spend: dict[str, list[int]] = {}  # budget counter -> [units spent (and reserved)]
        self._executor: ThreadPoolExecutor | None = None  # the one thread that touches SQLite
        self._db: sqlite3.Connection | None = None
        self._task: asyncio.Task[None] | None = None

    async def _call(self, function: Any, *args: Any) -> Any:
        """Run ``function`` on the writer thread (opening the file first, once)."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gatewayctl-usage")
        if self._db is None:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._open)
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    # -- the writer thread -----------------------------------------------------------------------

    def _open(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA busy_timeout = 5000")  # several processes may share the file (workers)
        if self.path != ":memory:":
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
        db.execute(_SCHEMA)
        self._db = db

    def _write(self, pending: dict[Row, list[int]]) -> None:
        assert self._db is not None
        rows = [(*row, *figures) for row, figures in pending.items()]
        with self._db:  # one transaction
            self._db.execute("BEGIN")
            self._db.executemany(_UPSERT, rows)

    def _select(self, since_hour: int) -> list[tuple[Any, ...]]:
        assert self._db is not None
        return self._db.execute(
            "SELECT key, route, model, SUM(requests), SUM(prompt), SUM(completion), SUM(cost_nano) "
            "FROM usage WHERE hour >= ? GROUP BY key, route, model",
            (since_hour,),
        ).fetchall()

    async def spend_since(self, key_name: str, unit: str, since: float) -> int:
        """What ``key_name`` spent from the hour holding ``since`` on: USD (nano-dollars) or tokens,
        from the table plus the rows not written yet. The rows in hand are summed in the same step
        as the read is queued on the writer thread, behind any write already queued: each row is
        counted once."""
        hour = int(since // 3600)
        column = "cost_nano" if unit == "usd" else "prompt + completion"
        unwritten = 0
        for (row_hour, name, _, _), (_, prompt, completion, nano) in self.ledger.pending.items():
            if name == key_name and row_hour >= hour:
                unwritten += nano if unit == "usd" else prompt + completion

        def read() -> int:
            assert self._db is not None
            (total,) = self._db.execute(
                f"SELECT COALESCE(SUM({column}), 0) FROM usage WHERE hour >= ? AND key = ?",
                (hour, key_name),
            ).fetchone()
            return int(total)

        return unwritten + int(await self._call(read))

    async def seed(self, counter: str, spent: int, ttl: int) -> None:
        """A budget counter starts from at least ``spent`` (what the usage table says was spent in
        its period); a counter already higher (reservations of running requests) keeps its value."""
        slot = self._budget_slot(counter)
        slot[0] = max(slot[0], spent)

    def _budget_slot(self, counter: str) -> list[int]:
        """The one-item list holding a budget counter's spend. A new counter (a new period, or a
        new unit) replaces the key's earlier ones: the table holds one counter per key and unit."""
        slot = self._spend.get(counter)
        if slot is None:
            family = counter.rsplit("|", 1)[0] + "|"  # b|<key>|<unit>| (a period id holds no "|")
            size = len(family)
            for old in [n for n in self._spend if n.startswith(family) and "|" not in n[size:]]:
                del self._spend[old]
            slot = self._spend[counter] = [0]
        return slot

    # -- the interface the governor uses ---------------------------------------------------------

    async def admit(
        self, windows: Sequence[WindowCheck], tokens: int, budgets: Sequence[BudgetCheck], units: int
    ) -> Admission:
        return self.admit_now(windows, tokens, budgets, units)

    def admit_now(
        self, windows: Sequence[WindowCheck], tokens: int, budgets: Sequence[BudgetCheck], units: int
    ) -> Admission:
        """Check every window and budget; if none is used up, reserve ``tokens`` in each window and
        ``units`` in each budget (all or nothing: nothing awaits in between). The hold is the counters' own slots (with each window's number),
        so settling looks nothing up. :meth:`admit` without the coroutine (the governor calls this
        one: nothing here waits)."""
        now = self.clock()
        figures: list[int] = []
        slots = self._windows
        if len(slots) >= self._sweep_at:
            self._sweep(now)
        held: list[tuple[list[Any], float]] = []  # (slot, window number) of each window reserved into
        for counter, limit, period in windows:
            window = now // period  # a float: compared, never used as an index
            slot = slots.get(counter)  # [window, current, previous, period]
            if slot is None:
                slot = slots[counter] = [window, 0, 0, period]
            elif slot[0] != window:  # a new window: the current one becomes the previous, or both reset
                slot[2] = slot[1] if slot[0] == window - 1 else 0
                slot[1] = 0
                slot[0] = window
            previous, current = slot[2], slot[1]
            figures += (previous, current)
            if previous * (period - (now - window * period)) / period + current >= limit:
                return self._refused(len(held), figures, held, [], tokens, units)
            slot[1] = current + tokens  # reserved at once; given back if a later check refuses
            held.append((slot, window))
        spends: list[list[int]] = []
        for counter, amount, _ in budgets:
            spend = self._spend.get(counter) or self._budget_slot(counter)
            figures.append(spend[0])
            if spend[0] >= amount:
                return self._refused(len(held) + len(spends), figures, held, spends, tokens, units)
            spend[0] += units
            spends.append(spend)
        return -1, figures, (held, spends)

    @staticmethod
    def _refused(
        index: int,
        figures: list[int],
        held: list[tuple[list[Any], float]],
        spends: list[list[int]],
        tokens: int,
        units: int,
    ) -> Admission:
        """Refused by check ``index``: give back what the checks before it reserved."""
        for slot, _ in held:
            slot[1] -= tokens
        for spend in spends:
            spend[0] -= units
        return index, figures, None

    def _sweep(self, now: float) -> None:
        """Drop windows that count nothing any more (both passed), once the table has doubled
        since the last sweep: memory follows the recently active keys (e.g. client IPs). A hold
        on a dropped slot settles into nothing, which is right: its window counts nothing."""
        slots = self._windows
        for name in [name for name, slot in slots.items() if now // slot[3] > slot[0] + 1]:
            del slots[name]
        self._sweep_at = max(_MIN_SWEEP, 2 * len(slots))

    async def settle(self, hold: Any, tokens: int, units: int) -> None:
        """Replace reservations by actual figures: ``tokens`` more (or fewer) in each window held,
        ``units`` in each budget."""
        self.settle_now(hold, tokens, units)

    def settle_now(self, hold: Any, tokens: int, units: int) -> None:
        """:meth:`settle` without the coroutine (the governor calls this one)."""
        windows, spends = hold
        for slot, window in windows:
            if slot[0] == window:
                slot[1] = max(0, slot[1] + tokens)
            elif slot[0] == window + 1:  # the window has turned: the reservation is in the previous
                slot[2] = max(0, slot[2] + tokens)
        for spend in spends:
            spend[0] = max(0, spend[0] + units)

    defer = settle_now  # a release that cannot wait (a cancelled request): here it is the same

    async def spent(self, counters: Sequence[str]) -> list[int]:
        return [self._spend.get(counter, (0,))[0] for counter in counters]

    async def usage(self, since: float, by: str) -> list[dict[str, Any]]:
        await self.flush()
        return aggregate(await self._call(self._select, int(since // 3600)), by)

    async def flush(self) -> None:
        pending = self.ledger.take()
        if pending:
            try:
                await self._call(self._write, pending)
            except (sqlite3.Error, OSError) as exc:
                self._restore(pending)
                logger.error("usage store %s: write failed (%s); will retry", self.path, exc)

    def _restore(self, pending: dict[Row, list[int]]) -> None:
        for row, (requests, prompt, completion, nano) in pending.items():
            slot = self.ledger.pending.setdefault(row, [0, 0, 0, 0])
            slot[0] += requests
            slot[1] += prompt
            slot[2] += completion
            slot[3] += nano

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL)
            try:
                await self.flush()
            except Exception:  # the process edge of a background task: log, keep writing
                logger.exception("usage writer failed; will try again")

    async def start(self) -> None:
        await self._call(lambda: None)  # open (or create) the file now: a bad path fails start-up
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="gatewayctl-usage-writer")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()
        if self._executor is not None:
            if self._db is not None:
                await self._call(self._db.close)
                self._db = None
            self._executor.shutdown(wait=True)
            self._executor = None
