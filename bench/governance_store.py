"""What one governed request costs the stores: admission (check and reserve) plus settling.

``python -m bench.governance_store [--requests 3000]`` runs, per store, the calls a request with a
token limit and a USD budget makes (``admit`` with one window and one budget, then ``settle``) and
prints wall and CPU time per request: the embedded store (dicts), and Redis (one Lua script, then
one MULTI; a throw-away ``redis-server`` on 127.0.0.1, skipped when none is installed). Also the
embedded store's once-a-second SQLite write, per distinct usage row. The gateway's own work around
these calls is what ``bench.ab --governance`` measures.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from gateway_server.usage_store import BudgetCheck, EmbeddedStore, WindowCheck


async def _per_request(store: Any, requests: int) -> tuple[float, float]:
    window = WindowCheck("t|route:bench|*|60", 10**15, 60)
    budget = BudgetCheck("b|bench|usd|2026-12", 10**18, time.time() + 86400)
    for _ in range(200):  # warm-up
        _, _, hold = await store.admit([window], 1100, [budget], 700_000)
        await store.settle(hold, -100, -100)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(requests):
        _, _, hold = await store.admit([window], 1100, [budget], 700_000)
        await store.settle(hold, -100, -100)
    return (time.perf_counter() - wall) / requests * 1e6, (time.process_time() - cpu) / requests * 1e6


async def _sqlite_write(path: Path, rows: int) -> float:
    store = EmbeddedStore(str(path))
    await store.start()
    for index in range(rows):
        store.ledger.add((int(time.time() // 3600), f"key{index % 10}", f"route{index}", "m"), 10, 20, 30)
    started = time.perf_counter()
    await store.flush()
    took = time.perf_counter() - started
    await store.close()
    return took / rows * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        wall, cpu = asyncio.run(_per_request(EmbeddedStore(str(Path(tmp) / "a.db")), args.requests))
        print(f"embedded store: admit + settle {wall:8.1f} us wall {cpu:8.1f} us CPU per request")
        per_row = asyncio.run(_sqlite_write(Path(tmp) / "b.db", 500))
        print(f"embedded store: SQLite write   {per_row:8.1f} us per distinct row (once a second)")
        from gateway_server.testing.redis_server import RedisServer, redis_server_binary

        if redis_server_binary() is None:
            print("redis: not available (redis-server is not installed)")
            return 0
        with RedisServer(work_dir=Path(tmp) / "redis") as server:
            from gateway_server.shared import SharedState
            from gateway_server.usage_redis import RedisUsageStore

            async def redis_run() -> tuple[float, float]:
                shared = SharedState(server.url)
                try:
                    return await _per_request(RedisUsageStore(shared), args.requests)
                finally:
                    await shared.close()

            wall, cpu = asyncio.run(redis_run())
            print(
                f"redis store:    admit + settle {wall:8.1f} us wall {cpu:8.1f} us CPU per request (2 round trips)"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
