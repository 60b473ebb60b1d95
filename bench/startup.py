"""Start-up time and idle memory of ``gatewayctl serve``, source trees compared start by start.

``python -m bench.run`` times start-up as one figure among many (a few starts, 11 minutes). To tell
whether a change to imports pays, this starts the gateway many times, alternating between source
trees (A B A B ...) so that what other processes do to the machine hits every tree alike, and
reports each tree's median::

    git archive HEAD~1 | (mkdir -p /tmp/before && tar -x -C /tmp/before)
    .venv/bin/python -m bench.startup -n 15 --tree before=/tmp/before --tree after=.

Each start is what ``bench.run`` measures: ``python -m gatewayctl serve CONFIG`` (one worker, pinned
to core 0, ``PYTHONPATH`` and working directory the tree), process start → the first ``GET /health``
200 (polled every 10 ms), then, 0.3 s later, ``VmRSS`` ("RSS idle"). Every tree is byte-compiled
first (``compileall``): with ``PYTHONDONTWRITEBYTECODE=1`` a stale ``.pyc`` would be recompiled at
every start and swamp the difference.
"""

from __future__ import annotations

import argparse
import compileall
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench._proc import free_port, pin_command, rss_mib, terminate, wait_healthy
from bench.measure import GATEWAY_CPU

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = "sample-configs/quickstart.yaml"


def start_once(tree: Path, config: str, timeout: float = 30.0) -> tuple[float, float | None]:
    """One start in ``tree``: (seconds to /health 200, RSS MiB 0.3 s later)."""
    port = free_port()
    cmd = [sys.executable, "-m", "gatewayctl", "serve", config, "--host", "127.0.0.1", "--port", str(port)]
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "PYTHONPATH": str(tree)}
    started = time.perf_counter()
    proc = subprocess.Popen(
        pin_command(cmd, GATEWAY_CPU), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL, env=env, cwd=tree, start_new_session=True,
    )  # fmt: skip
    try:
        took = wait_healthy(proc, port, timeout, start=started)
        if took is None:
            raise RuntimeError(f"{tree}: no /health 200 within {timeout}s (exit code {proc.poll()})")
        time.sleep(0.3)  # as bench.run: let start-up work settle before reading the idle RSS
        return took, rss_mib(proc.pid)
    finally:
        terminate(proc)


def _summary(values: list[float]) -> str:
    return f"median {statistics.median(values):.3f} (min {min(values):.3f}, max {max(values):.3f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=15, help="starts per tree (default 15)")
    parser.add_argument(
        "--tree", action="append", default=[], metavar="LABEL=DIR", help="a source tree (repeatable)"
    )
    parser.add_argument(
        "--config", default=DEFAULT_CONFIG, help=f"relative to each tree (default {DEFAULT_CONFIG})"
    )
    args = parser.parse_args(argv)
    trees = [(label, Path(path).resolve()) for label, _, path in (t.partition("=") for t in args.tree)]
    if not trees:
        trees = [("this tree", ROOT)]
    for _, tree in trees:
        for package in ("gateway_server", "gatewayctl"):
            compileall.compile_dir(tree / package, quiet=1)
    results: dict[str, list[tuple[float, float | None]]] = {label: [] for label, _ in trees}
    for i in range(args.n):
        order = trees if i % 2 == 0 else trees[::-1]  # neither tree always goes first
        for label, tree in order:
            took, rss = start_once(tree, args.config)
            results[label].append((took, rss))
            print(f"{i + 1:3d} {label}: {took:.3f} s, RSS {rss or 0:.1f} MiB", file=sys.stderr, flush=True)
    for label, rows in results.items():
        starts = [took for took, _ in rows]
        rss = [r for _, r in rows if r is not None]
        print(f"{label}: start-up {_summary(starts)} s; RSS idle {_summary(rss) if rss else 'n/a'} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
