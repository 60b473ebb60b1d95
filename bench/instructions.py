"""Instructions per request, counted by valgrind: a hot-path figure that other processes cannot move.

``python -m bench.instructions [--a CMD] [--b CMD] [--features | --governance] [--call CALL]
[--requests 2000] [--concurrency 8] [--keep DIR]``

``bench.ab`` measures CPU time, which a busy machine inflates (caches, frequency, wake-ups), so on a
shared two-core machine a 5 % change hides in the noise. This counts the instructions the gateway
process executes per request instead: each side runs under ``valgrind --tool=callgrind`` with
collection off, is warmed up, then collection is switched on (``callgrind_control -i on``) for
exactly ``--requests`` requests at ``--concurrency`` and switched off again. The count is the same
whatever else the machine does; it does not see cache misses or system-call time, so quote it next
to a ``bench.ab`` figure, not instead of one. Everything runs on 127.0.0.1 and stops by itself.
A side takes about a minute (Python under valgrind is ~50x slower). Needs valgrind on the PATH.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from bench import measure
from bench._proc import terminate
from bench.load import run_load_sync
from bench.measure import UPSTREAM_CPU, Plan
from bench.run import DEFAULT_GATEWAY_CMD, GATEWAY_KEY, Scenario, gateway_config, start_gateway
from bench.upstream import start_upstream

_TOTALS = re.compile(rb"^(?:summary|totals):\s+(\d+)", re.MULTILINE)


def _control(pid: int, state: str) -> None:
    """Switch callgrind's collection on or off (callgrind_control exits 0 even when it fails)."""
    done = subprocess.run(["callgrind_control", "-i", state, str(pid)], capture_output=True, text=True)
    if "OK" not in done.stdout:
        raise SystemExit(f"callgrind_control -i {state} {pid}: {done.stdout} {done.stderr}".strip())


def count(command: str, side: str, args: argparse.Namespace, config: dict, headers: dict[str, str],
          workdir: Path) -> float:  # fmt: skip
    """Start ``command`` under callgrind, drive ``args.requests`` calls with collection on, return
    instructions per request."""
    call, requests, concurrency = args.call, args.requests, args.concurrency
    out = workdir / f"callgrind-{side}.out"
    valgrind = f"valgrind --tool=callgrind --trace-children=yes --instr-atstart=no --callgrind-out-file={out}.%p "
    plan = replace(Plan(), startup_timeout=600.0, timeout=120.0)
    scenario = Scenario(f"ir-{side}", valgrind + command, config, headers=headers)
    proc, port, log, took = start_gateway(scenario, workdir, 0, plan)
    try:
        if took < 0:
            raise SystemExit(f"{side} did not start under valgrind: {measure.read_tail(log)}")
        spec = measure._spec(port, measure.CALLS[call].path, measure.CALLS[call].body, headers,
                             concurrency=concurrency, requests=200, duration=600.0, timeout=120.0)  # fmt: skip
        run_load_sync(spec)  # warm-up: imports, caches, connections, JIT-free but lazy paths
        _control(proc.pid, "on")
        result = run_load_sync(replace(spec, requests=requests, warmup=0))
        _control(proc.pid, "off")
        if result.ok != requests or result.errors:
            raise SystemExit(f"{side}: {result.ok} of {requests} answered, errors {result.error_kinds}")
    finally:
        terminate(proc, grace=60.0)
    time.sleep(0.2)
    totals = [int(m) for path in workdir.glob(f"callgrind-{side}.out*") for m in _TOTALS.findall(path.read_bytes())]
    if not totals:
        listing = sorted(p.name for p in workdir.iterdir())
        raise SystemExit(f"{side}: callgrind wrote no totals ({listing}): {measure.read_tail(log)}")
    return sum(totals) / requests


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--a", default=None, help="command template of A (default: none, only B)")
    parser.add_argument("--b", default=DEFAULT_GATEWAY_CMD, help="command template of B (default: this checkout)")
    parser.add_argument("--features", action="store_true", help="auth key, route limit and metrics on")
    parser.add_argument("--governance", action="store_true",
                        help="token limits, prices and a key budget on top of --features (both sides)")  # fmt: skip
    parser.add_argument("--call", default="seed chat", choices=sorted(measure.CALLS))
    parser.add_argument("--requests", type=int, default=2000, help="measured requests (default 2000)")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight (default 8)")
    parser.add_argument("--keep", type=Path, default=None,
                        help="copy callgrind's files here (callgrind_annotate ranks the C functions)")  # fmt: skip
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("bench.instructions needs valgrind (Debian: apt-get install valgrind)", file=sys.stderr)
        return 2
    features = args.features or args.governance
    headers = {"Authorization": f"Bearer {GATEWAY_KEY}"} if features else {}
    figures: dict[str, float] = {}
    with start_upstream(cpu=UPSTREAM_CPU, max_seconds=3600) as upstream, tempfile.TemporaryDirectory() as tmp:
        config = gateway_config(upstream.port, features=features, governance=args.governance)
        for side, command in (("A", args.a), ("B", args.b)):
            if command is not None:
                figures[side] = count(command, side, args, config, headers, Path(tmp))
                print(f"{side}: {figures[side]:,.0f} instructions per request", flush=True)
        if args.keep is not None:
            args.keep.mkdir(parents=True, exist_ok=True)
            for path in Path(tmp).glob("callgrind-*.out*"):
                shutil.copy(path, args.keep / path.name)
    if "A" in figures:
        print(f"B/A {figures['B'] / figures['A']:.3f} ({figures['B'] - figures['A']:+,.0f} per request)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
