"""Where the metric values live: one flat array of doubles per process, and how a scrape adds up
the arrays of every worker of the server.

A series (a family plus its label values) owns ``width`` consecutive slots of the array: one for a
counter or a gauge, one per bucket plus one for the sum for a histogram. The hot path only does
``values[slot] += amount`` on a ``memoryview`` of doubles after one dict lookup.

- :class:`LocalStore`: one process (``serve`` with one worker, the library, tests): the array is
  in memory and a scrape reads it.
- :class:`FileStore`: ``serve --workers N``. Every worker keeps its array in a memory-mapped file
  of a directory the supervisor made for this server (``<pid>.values``), and appends one JSON line
  per series it allocates to ``<pid>.keys``. Each file has exactly one writer, so no lock is taken
  on the hot path. A scrape, answered by any worker, reads every worker's two files and adds them
  up: every scrape shows the whole server's totals. Counters of a worker that died stay in the sum
  (so a restart never makes a counter go backwards); gauges count live workers only.

Why this and not ``prometheus_client``'s multiprocess mode or aggregation by the supervisor: the
figures are in docs/observability.md ("Several workers"). In short, the multiprocess mode takes a
lock and does a struct pack per increment (about 10 times the cost of a slot add here) and cannot
forget the series of a deleted route; the supervisor would have to ask every worker at each
scrape over a channel uvicorn's supervisor does not have.

Series of a deleted route are dropped (:meth:`drop`): their slots are zeroed and reused, so
create/delete cycles neither grow ``/metrics`` nor the files.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterable, Iterator
from typing import Any

import orjson

__all__ = ["METRICS_DIR_ENV", "FileStore", "LocalStore", "Series", "Store", "read_dir"]

METRICS_DIR_ENV = "GATEWAYCTL_METRICS_DIR"  # set by the runner for --workers N

Series = tuple[str, tuple[str, ...]]  # (family name, label values)
_DOUBLE = 8
_INITIAL_SLOTS = 4096


class Store:
    """Slots for series; ``values`` is the array the hot path adds to."""

    def __init__(self) -> None:
        self.slots: dict[Series, int] = {}
        self.widths: dict[Series, int] = {}
        self._free: dict[int, list[int]] = {}  # width -> first slots of dropped series
        self._used = 0
        # One process: a list (an add to a list item is about a third cheaper than to a memoryview
        # of doubles); a FileStore's is the memory-mapped file's.
        self.values: list[float] | memoryview[float] = [0.0] * _INITIAL_SLOTS

    def slot(self, series: Series, width: int = 1) -> int:
        slot = self.slots.get(series)
        if slot is None:
            slot = self._allocate(series, width)
        return slot

    def _allocate(self, series: Series, width: int) -> int:
        free = self._free.get(width)
        if free:
            slot = free.pop()
        else:
            slot = self._used
            if slot + width > len(self.values):
                self._grow(max(len(self.values) * 2, slot + width))
            self._used += width
        self.slots[series] = slot
        self.widths[series] = width
        self._announce(series, slot, width)
        return slot

    def drop(self, keep: Any) -> None:
        """Forget every series for which ``keep(series)`` is false; their slots are reused."""
        for series in [series for series in self.slots if not keep(series)]:
            slot = self.slots.pop(series)
            width = self.widths.pop(series)
            for index in range(slot, slot + width):
                self.values[index] = 0.0
            self._retract(slot)
            self._free.setdefault(width, []).append(slot)

    def collect(self) -> dict[Series, list[float]]:
        """Every series with its values (the whole server's, for a FileStore)."""
        values = self.values
        return {
            series: list(values[slot : slot + self.widths[series]]) for series, slot in self.slots.items()
        }

    def _grow(self, slots: int) -> None:
        assert isinstance(self.values, list)
        self.values.extend([0.0] * (slots - len(self.values)))

    def _announce(self, series: Series, slot: int, width: int) -> None:
        pass

    def _retract(self, slot: int) -> None:
        pass

    def close(self) -> None:
        pass


LocalStore = Store


class FileStore(Store):
    """This worker's slots in ``<directory>/<pid>.values``, its series in ``<pid>.keys``."""

    def __init__(self, directory: str, *, gauges: Iterable[str] = (), pid: int | None = None) -> None:
        self.directory = directory
        self.gauges = frozenset(gauges)
        self.pid = os.getpid() if pid is None else pid
        base = os.path.join(directory, str(self.pid))
        self._keys = open(base + ".keys", "ab", buffering=0)  # noqa: SIM115 - lives as long as the store
        self._file = open(base + ".values", "w+b")  # noqa: SIM115
        self._file.truncate(_INITIAL_SLOTS * _DOUBLE)
        self._map = mmap.mmap(self._file.fileno(), _INITIAL_SLOTS * _DOUBLE)
        super().__init__()
        self.values = memoryview(self._map).cast("d")

    def _grow(self, slots: int) -> None:
        assert isinstance(self.values, memoryview)
        self.values.release()
        self._file.truncate(slots * _DOUBLE)
        self._map.resize(slots * _DOUBLE)
        self.values = memoryview(self._map).cast("d")

    def _announce(self, series: Series, slot: int, width: int) -> None:
        # Written before the first add: a reader that sees the slot sees the zero or a later value.
        self._keys.write(orjson.dumps([slot, width, series[0], series[1]]) + b"\n")

    def _retract(self, slot: int) -> None:
        self._keys.write(orjson.dumps([slot, 0]) + b"\n")

    def collect(self) -> dict[Series, list[float]]:
        return read_dir(self.directory, self.gauges)

    def close(self) -> None:
        assert isinstance(self.values, memoryview)
        self.values.release()
        self._map.close()
        self._file.close()
        self._keys.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _series_of(keys: bytes) -> Iterator[tuple[int, int, Series]]:
    """Replay a keys file: the series that hold slots now (later lines override earlier ones)."""
    live: dict[int, tuple[int, Series]] = {}
    for line in keys.split(b"\n"):
        if not line:
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue  # the last line, caught while it is written
        if record[1] == 0:
            live.pop(record[0], None)
        else:
            live[record[0]] = (record[1], (record[2], tuple(record[3])))
    for slot, (width, series) in live.items():
        yield slot, width, series


def read_dir(directory: str, gauges: Iterable[str] = ()) -> dict[Series, list[float]]:
    """The sum over every worker's files in ``directory``. Families named in ``gauges`` count only
    workers still alive (an in-flight count must not keep a dead worker's requests)."""
    gauge_names = frozenset(gauges)
    totals: dict[Series, list[float]] = {}
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return totals
    for name in names:
        if not name.endswith(".keys"):
            continue
        pid = int(name[:-5])
        base = os.path.join(directory, name[:-5])
        try:
            with open(base + ".keys", "rb") as file:
                keys = file.read()
            with open(base + ".values", "rb") as file:
                raw = file.read()
        except FileNotFoundError:
            continue
        values = memoryview(raw[: len(raw) - len(raw) % _DOUBLE]).cast("d")
        alive: bool | None = None
        for slot, width, series in _series_of(keys):
            if series[0] in gauge_names:
                if alive is None:
                    alive = _alive(pid)
                if not alive:
                    continue
            if slot + width > len(values):
                continue
            current = totals.get(series)
            if current is None:
                totals[series] = list(values[slot : slot + width])
            else:
                for index in range(width):
                    current[index] += values[slot + index]
    return totals
