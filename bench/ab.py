"""A/B: two gateway commands, interleaved, on the c=64 figures (CPU per request, rps, p50, p99).

``python -m bench.ab --a "CMD" --b "CMD" [--rounds 6] [--seconds 6] [--features] [--governance] [--concurrency 64]
[--call-a CALL] [--call-b CALL]``

For a change to the hot path, the question is "did it lower the gateway's CPU per request?", and on
a shared machine the answer drifts by more than the change between two separate ``bench.run``
invocations. Here both gateways run at once on core 0 (only one is loaded at a time), the fake
upstream and the load on core 1, and rounds alternate A B A B ..., so drift hits both alike. A
command is a template like ``bench.run --gateway-cmd``; to measure an older commit, check it out
with ``git worktree add /tmp/old <commit>`` and use
``--a "env PYTHONPATH=/tmp/old {python} -m gatewayctl serve {config} --host 127.0.0.1 --port {port}"``.
``--call-a``/``--call-b`` measure another request than ``seed chat`` (a key of ``measure.CALLS``);
with the same command on both sides and two calls, the A/B compares two paths of one gateway (e.g.
``--call-a "openai chat" --call-b "anthropic messages"``: the Messages API's translation cost).
Prints each round and the medians; exit code 0.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from bench import measure
from bench._proc import terminate, unpin_self
from bench.measure import UPSTREAM_CPU, Plan, Target
from bench.run import DEFAULT_GATEWAY_CMD, GATEWAY_KEY, Scenario, gateway_config, start_gateway
from bench.upstream import start_upstream

FIGURES = (
    "gateway_cpu_us_per_request",
    "tput_rps",
    "tput_p50_ms",
    "tput_p99_ms",
    "other_cpu_share_during_c64",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--a", default=DEFAULT_GATEWAY_CMD, help="command template of A (default: this checkout)"
    )
    parser.add_argument(
        "--b", default=DEFAULT_GATEWAY_CMD, help="command template of B (default: this checkout)"
    )
    parser.add_argument("--rounds", type=int, default=6, help="rounds per side (default 6)")
    parser.add_argument("--seconds", type=float, default=6.0, help="c=64 load per round (default 6)")
    parser.add_argument("--features", action="store_true", help="auth key, route limit and metrics on")
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight (default 64)")
    parser.add_argument(
        "--governance",
        action="store_true",
        help="B only: a token limit, prices and a key budget on top of --features (A keeps --features)",
    )
    parser.add_argument(
        "--call-a", default="seed chat", choices=sorted(measure.CALLS), help="the call measured on A (default seed chat)"
    )
    parser.add_argument(
        "--call-b", default=None, choices=sorted(measure.CALLS), help="the call measured on B (default: --call-a)"
    )
    args = parser.parse_args(argv)

    plan = replace(Plan(), tput_seconds=args.seconds, tput_concurrency=args.concurrency)
    results: dict[str, list[dict]] = {"A": [], "B": []}
    procs = []
    with start_upstream(cpu=UPSTREAM_CPU, max_seconds=3600) as upstream, tempfile.TemporaryDirectory() as tmp:
        try:
            targets = {}
            calls = {"A": args.call_a, "B": args.call_b or args.call_a}
            for side, command in (("A", args.a), ("B", args.b)):
                features = args.features or args.governance
                config = gateway_config(
                    upstream.port, features=features, governance=args.governance and side == "B"
                )
                headers = {"Authorization": f"Bearer {GATEWAY_KEY}"} if features else {}
                scenario = Scenario(f"side-{side}", command, config, headers=headers, features=features)
                proc, port, log, took = start_gateway(scenario, Path(tmp), 0, plan)
                procs.append(proc)
                if took < 0:
                    print(f"{side} did not start: {measure.read_tail(log)}", file=sys.stderr)
                    return 1
                targets[side] = Target(port, proc.pid, upstream.port, upstream.pid, headers, primary=calls[side])
                why = measure.check_call(port, measure.CALLS[calls[side]], headers)
                if why is not None:
                    print(f"{side} does not answer the benchmark call: {why}", file=sys.stderr)
                    return 1
            for side in targets:  # warm both up once before anything counts
                measure.throughput(targets[side], replace(plan, tput_seconds=1.0))
            for index in range(args.rounds):
                for side in ("A", "B") if index % 2 == 0 else ("B", "A"):
                    figures = measure.throughput(targets[side], plan)
                    unpin_self()
                    results[side].append(figures)
                    row = "  ".join(f"{key}={figures.get(key)}" for key in FIGURES)
                    print(f"round {index + 1} {side}: {row}", flush=True)
                    time.sleep(0.5)
        finally:
            for proc in procs:
                terminate(proc)
    print()
    for key in FIGURES:
        a = [r[key] for r in results["A"] if isinstance(r.get(key), (int, float))]
        b = [r[key] for r in results["B"] if isinstance(r.get(key), (int, float))]
        if a and b:
            ma, mb = statistics.median(a), statistics.median(b)
            ratio = f"{mb / ma:.3f}" if ma else "-"
            print(f"{key:34s} A median {ma:10.1f}  B median {mb:10.1f}  B/A {ratio}  "
                  f"(A {min(a):.1f}-{max(a):.1f}, B {min(b):.1f}-{max(b):.1f})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
