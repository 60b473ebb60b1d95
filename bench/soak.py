"""Soak test: mixed load against a real gateway process for minutes, sampling its memory.

``python -m bench.soak [--minutes 10] [--sample-every 5] [--out bench/results/soak-<ts>.json]``

Starts two fake upstreams (``bench.upstream``; the second answers 500 to every ``--fail-every``-th call)
pinned to core 1, writes a config with seven routes (plain chat and embeddings, a flaky route with
``retry:``, a flaky route without it, a route whose primary model is a closed port with a
``fallbacks:`` entry, a route with a ``limit:`` that the load exceeds) and starts
``python -m gatewayctl serve CONFIG`` pinned to core 0 (``bench.run.start_gateway``). The load
generator (``bench.load``, in this process, on core 1) then drives 16 keep-alive connections split
over the mixes in ``MIXES``: closed loop, except the rate-limited mix, which is paced just above its
limit. After a warm-up, every ``--sample-every`` seconds it records the gateway's VmRSS, open fds,
threads, CPU share, and the requests and status codes of that window.

The report: RSS at the start (after the warm-up) and at 25/50/75/100 % of the run, the least-squares
slope of RSS over the second half in MiB per minute, requests and statuses, and ``plateau: yes/no``:
yes when the second-half slope is below ``SLOPE_LIMIT`` MiB/min *and* the last quarter's highest RSS
is within ``QUARTER_MARGIN`` of the second quarter's highest. Exit code 0 = plateau, 1 = no plateau,
2 = the soak could not run (or the gateway died), 130 = interrupted (the partial report is printed).

All traffic goes to 127.0.0.1; every load is bounded by time; Ctrl-C or SIGTERM stops the load, and
every process started here is terminated in a ``finally`` block.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import math
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bench._proc import (
    cpu_seconds,
    free_port,
    http_get,
    open_fds,
    pin_self,
    pinning_available,
    rss_mib,
    terminate,
    threads,
    unpin_self,
)
from bench.load import LoadResult, LoadSpec, percentile, run_load
from bench.measure import EMBED_INPUT, SEED_CHAT, UPSTREAM_CPU, UPSTREAM_KEY, Plan, read_tail
from bench.run import DEFAULT_GATEWAY_CMD, ROOT, Scenario, _git, _version, start_gateway
from bench.upstream import UpstreamHandle, UpstreamOptions, new_event_loop, start_upstream

SLOPE_LIMIT = 0.5  # MiB per minute over the second half
QUARTER_MARGIN = 0.05  # last-quarter max RSS may exceed the second-quarter max by this share
FAIL_EVERY = 5  # the flaky upstream answers 500 to every 5th call
LIMIT_PER_SECOND = 40  # the limited route admits this many calls a second...
LIMITED_RATE = 50  # ...and its mix sends this many a second (about one in five refused with 429)
PACE_SLICE = 0.1  # the paced mix sends LIMITED_RATE x PACE_SLICE requests every PACE_SLICE seconds
STREAM_CHUNKS = 16
STREAM_CHUNK_DELAY_MS = 1.0  # paced streams: the gateway holds each one open ~20 ms
REQUEST_TIMEOUT = 10.0


@dataclass(frozen=True)
class Mix:
    """One kind of request and how many connections send it."""

    name: str
    path: str
    body: dict
    connections: int
    stream: bool = False
    per_second: int = 0  # > 0: paced at this rate (a new connection each PACE_SLICE); 0: closed loop


MIXES = [
    Mix("seed chat", "/gateway/chat/invocations", SEED_CHAT, 3),
    Mix("openai chat", "/v1/chat/completions", {**SEED_CHAT, "model": "chat"}, 3),
    Mix("endpoints chat stream", "/endpoints/chat/invocations", {**SEED_CHAT, "stream": True}, 3, True),
    Mix("seed embeddings", "/gateway/embeddings/invocations", {"text": EMBED_INPUT}, 1),
    Mix("openai embeddings", "/v1/embeddings", {"model": "embeddings", "input": EMBED_INPUT}, 1),
    Mix("flaky chat, retry", "/gateway/chat-flaky/invocations", SEED_CHAT, 1),
    Mix("flaky stream, retry", "/endpoints/chat-flaky/invocations", {**SEED_CHAT, "stream": True}, 1, True),
    Mix("flaky chat, no retry", "/v1/chat/completions", {**SEED_CHAT, "model": "chat-errors"}, 1),
    Mix("dead primary, fallback", "/gateway/chat-fallback/invocations", SEED_CHAT, 1),
    Mix("rate-limited chat", "/gateway/chat-limited/invocations", SEED_CHAT, 1, per_second=LIMITED_RATE),
]


def _model(name: str, port: int) -> dict:
    return {
        "provider": "openai",
        "name": name,
        "config": {"openai_api_key": UPSTREAM_KEY, "openai_api_base": f"http://127.0.0.1:{port}/v1"},
    }


def soak_config(upstream_port: int, flaky_port: int, dead_port: int) -> dict:
    """The routes the mixes call: plain, flaky with and without retry, dead primary + fallback, limited."""
    chat = "gpt-4o-mini"
    return {
        "routes": [
            {"name": "chat", "route_type": "llm/v1/chat", "model": _model(chat, upstream_port)},
            {
                "name": "embeddings",
                "route_type": "llm/v1/embeddings",
                "model": _model("text-embedding-3-small", upstream_port),
            },
            {
                "name": "chat-flaky",
                "route_type": "llm/v1/chat",
                "model": _model(chat, flaky_port),
                "retry": {"attempts": 3, "backoff": 0.01},
                "timeout": REQUEST_TIMEOUT,
            },
            {
                "name": "chat-errors",
                "route_type": "llm/v1/chat",
                "model": _model(chat, flaky_port),
                "timeout": REQUEST_TIMEOUT,
            },
            {
                "name": "chat-fallback",
                "route_type": "llm/v1/chat",
                "model": _model(chat, dead_port),
                "fallbacks": [_model(chat, upstream_port)],
                "timeout": REQUEST_TIMEOUT,
            },
            {
                "name": "chat-limited",
                "route_type": "llm/v1/chat",
                "model": _model(chat, upstream_port),
                "limit": {"calls": LIMIT_PER_SECOND, "renewal_period": "second"},
            },
        ]
    }


# -- one window of load


@dataclass
class Tally:
    """Requests of one mix (or all of them) over one window."""

    status: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)  # no HTTP answer: connection errors, timeouts
    latencies_ns: list[int] = field(default_factory=list)  # 200s only

    def add(self, res: LoadResult) -> None:
        for code, n in res.status.items():
            self.status[str(code)] = self.status.get(str(code), 0) + n
        for kind, n in res.error_kinds.items():
            if not kind.startswith("HTTP "):
                self.errors[kind] = self.errors.get(kind, 0) + n
        self.latencies_ns.extend(res.latencies_ns)

    def merge(self, other: Tally) -> None:
        for src, dst in ((other.status, self.status), (other.errors, self.errors)):
            for k, n in src.items():
                dst[k] = dst.get(k, 0) + n
        self.latencies_ns.extend(other.latencies_ns)

    @property
    def requests(self) -> int:
        answered = sum(self.status.values())
        return answered + sum(n for k, n in self.errors.items() if not k.startswith("stream without"))

    def figures(self) -> dict:
        lat = sorted(self.latencies_ns)
        ms = {f"p{p}_ms": _ms(percentile(lat, p)) for p in (50, 99)}
        return (
            {"requests": self.requests, "status": dict(sorted(self.status.items()))}
            | ms
            | ({"errors": self.errors} if self.errors else {})
        )


def _ms(ns: float | None) -> float | None:
    return None if ns is None else round(ns / 1e6, 3)


def _spec(port: int, mix: Mix, requests: int, seconds: float) -> LoadSpec:
    return LoadSpec(
        port=port,
        path=mix.path,
        body=json.dumps(mix.body).encode(),
        concurrency=mix.connections,
        requests=requests,
        duration=seconds,
        warmup=0,  # every request counts: the soak's own warm-up is a whole phase
        stream=mix.stream,
        timeout=REQUEST_TIMEOUT,
    )


async def _closed_loop(port: int, mix: Mix, seconds: float) -> Tally:
    tally = Tally()
    tally.add(await run_load(_spec(port, mix, 10_000_000, seconds)))
    return tally


async def _paced(port: int, mix: Mix, seconds: float) -> Tally:
    """``mix.per_second`` requests a second, sent in small bursts at the start of each ``PACE_SLICE``.

    Spread over the second so that a sliding-window limit sees a steady rate, whatever the phase of
    its windows: the share refused is then about 1 - limit / rate.
    """
    tally = Tally()
    end = time.perf_counter() + seconds
    for _ in range(math.ceil(seconds / PACE_SLICE) + 1):
        now = time.perf_counter()
        if now >= end - 0.01:
            break
        slice_s = min(PACE_SLICE, end - now)
        count = round(mix.per_second * slice_s)
        if count > 0:
            tally.add(await run_load(_spec(port, mix, count, slice_s)))
        await asyncio.sleep(max(0.0, now + slice_s - time.perf_counter()))
    return tally


async def window(port: int, seconds: float) -> dict[str, Tally]:
    """Every mix at once for ``seconds``; the tallies by mix name."""
    runs = [(_paced if m.per_second else _closed_loop)(port, m, seconds) for m in MIXES]
    return dict(zip((m.name for m in MIXES), await asyncio.gather(*runs), strict=True))


# -- the soak


@dataclass
class Gauges:
    rss_mib: float | None
    fds: int | None
    threads: int | None
    cpu_s: float | None


def gauges(pid: int) -> Gauges:
    return Gauges(rss_mib(pid), open_fds(pid), threads(pid), cpu_seconds(pid))


def sample(t_s: float, phase: str, g: Gauges, prev: Gauges | None, took: float, by_mix: dict) -> dict:
    total = Tally()
    for tally in by_mix.values():
        total.merge(tally)
    cpu = None
    if prev is not None and g.cpu_s is not None and prev.cpu_s is not None and took > 0:
        cpu = round((g.cpu_s - prev.cpu_s) / took, 3)
    out = {
        "t_s": round(t_s, 2),
        "phase": phase,
        "window_s": round(took, 2),
        "rss_mib": None if g.rss_mib is None else round(g.rss_mib, 2),
        "fds": g.fds,
        "threads": g.threads,
        "gateway_cpu_share": cpu,
    }
    out |= total.figures()
    out["rps"] = round(out["requests"] / took, 1) if took > 0 else None
    out["by_mix"] = {name: tally.figures() for name, tally in by_mix.items()}
    return out


class Stopped(Exception):
    """The soak stopped early: "interrupted" (Ctrl-C / SIGTERM), or why (a process exited, a window overran)."""


async def soak(
    pid: int,
    port: int,
    warmup_s: float,
    run_s: float,
    every: float,
    out: dict,
    problem: Callable[[], str | None],
) -> None:
    """Warm-up windows, then measured windows; appends to ``out["warmup"]`` / ``out["samples"]``.

    ``problem()`` is asked after every window: a reason (e.g. a process died) stops the soak.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(sig) is not signal.SIG_IGN:  # started in the background: SIGINT stays ignored
            loop.add_signal_handler(sig, stop.set)

    async def one(seconds: float) -> dict[str, Tally]:
        task = asyncio.ensure_future(window(port, seconds))
        stopper = asyncio.ensure_future(stop.wait())
        try:
            done, _ = await asyncio.wait(
                {task, stopper}, timeout=seconds + 3 * REQUEST_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            stopper.cancel()
        if task in done:
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        raise Stopped("interrupted" if stop.is_set() else f"a {seconds:.0f} s window did not end in time")

    def alive() -> None:
        why = problem()
        if why is not None:
            raise Stopped(why)

    # warm-up: the same load, not measured, so start-up allocations and caches settle first
    started = time.perf_counter()
    for _ in range(math.ceil(warmup_s / every) + 1):
        left = warmup_s - (time.perf_counter() - started)
        if left <= 0.05:
            break
        t0 = time.perf_counter()
        by_mix = await one(min(every, left))
        out["warmup"].append(
            sample(t0 - started, "warmup", gauges(pid), None, time.perf_counter() - t0, by_mix)
        )
        alive()

    prev = gauges(pid)
    start = time.perf_counter()
    out["samples"].append(sample(0.0, "start", prev, None, 0.0, {}))
    _progress(out["samples"][-1])
    for _ in range(math.ceil(run_s / every) + 1):
        left = run_s - (time.perf_counter() - start)
        if left <= 0.05:
            break
        t0 = time.perf_counter()
        by_mix = await one(min(every, left))
        took = time.perf_counter() - t0
        g = gauges(pid)
        out["samples"].append(sample(time.perf_counter() - start, "run", g, prev, took, by_mix))
        _progress(out["samples"][-1])
        prev = g
        alive()


def _progress(s: dict) -> None:
    bad = sum(n for code, n in s["status"].items() if code != "200") + sum(s.get("errors", {}).values())
    rss = "?" if s["rss_mib"] is None else f"{s['rss_mib']:.1f}"
    print(
        f"  t={s['t_s']:7.1f}s  rss {rss} MiB  fds {s['fds']}  rps {s['rps'] or 0:7.1f}  non-200 {bad}",
        file=sys.stderr,
        flush=True,
    )


# -- the verdict


def least_squares_slope(points: list[tuple[float, float]]) -> float | None:
    """Slope of y over x (None with fewer than two distinct x)."""
    if len(points) < 2:
        return None
    mx = sum(x for x, _ in points) / len(points)
    my = sum(y for _, y in points) / len(points)
    var = sum((x - mx) ** 2 for x, _ in points)
    if var == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in points) / var


def mix_totals(samples: list[dict]) -> dict[str, Tally]:
    """Statuses and errors of each mix summed over the samples (latencies are not kept in samples)."""
    out: dict[str, Tally] = {}
    for s in samples:
        for name, fig in s.get("by_mix", {}).items():
            out.setdefault(name, Tally()).merge(Tally(dict(fig["status"]), dict(fig.get("errors", {}))))
    return out


def analyse(samples: list[dict]) -> dict:
    """RSS at the quartiles, the second-half slope, the totals and the plateau verdict."""
    pts = [(s["t_s"], s["rss_mib"]) for s in samples if s["rss_mib"] is not None]
    if len(pts) < 2:
        return {"plateau": False, "why": "fewer than two RSS samples"}
    end = pts[-1][0]

    def at(share: float) -> dict:
        t, rss = min(pts, key=lambda p: abs(p[0] - share * end))
        return {"t_s": t, "rss_mib": rss}

    second_half = [(t / 60, rss) for t, rss in pts if t >= end / 2]
    slope = least_squares_slope(second_half)
    q2 = [rss for t, rss in pts if end / 4 <= t <= end / 2]
    q4 = [rss for t, rss in pts if t >= 3 * end / 4]
    total = Tally()
    for tally in mix_totals(samples).values():
        total.merge(tally)
    measured_s = sum(s["window_s"] for s in samples)
    rps = total.requests / measured_s if measured_s else 0.0
    out: dict = {
        "duration_s": end,
        "rss_points": {"start": at(0.0)} | {f"{p}%": at(p / 100) for p in (25, 50, 75, 100)},
        "slope_mib_per_min": None if slope is None else round(slope, 4),
        "slope_samples": len(second_half),
        "q2_max_mib": max(q2) if q2 else None,
        "q4_max_mib": max(q4) if q4 else None,
        "requests": total.requests,
        "rps": round(rps, 1),
        "status": dict(sorted(total.status.items())),
        "errors": total.errors,
    }
    if slope is not None and rps > 0:
        out["slope_bytes_per_request"] = round(slope * 2**20 / 60 / rps, 2)
    reasons = []
    if slope is None or len(second_half) < 3:
        reasons.append(f"too few samples in the second half ({len(second_half)})")
    elif slope >= SLOPE_LIMIT:
        reasons.append(f"second-half slope {slope:+.2f} MiB/min >= {SLOPE_LIMIT}")
    if not q2 or not q4:
        reasons.append("no sample in the second or the last quarter")
    elif max(q4) > (1 + QUARTER_MARGIN) * max(q2):
        reasons.append(f"last-quarter max {max(q4):.1f} MiB > {1 + QUARTER_MARGIN:.2f} x {max(q2):.1f} MiB")
    out["plateau"] = not reasons
    out["why"] = "; ".join(reasons) or "slope and quarter maxima within bounds"
    return out


def report(info: dict, samples: list[dict], result: dict) -> str:
    lines = [
        "",
        f"Soak: {info['command']}",
        f"  gateway pid {info.get('gateway_pid')} ({info['pinning']}); warm-up {info['warmup_s']:.0f} s, "
        f"then {result.get('duration_s', 0):.0f} s measured, a sample every {info['sample_every_s']:g} s",
        "  mixes: " + ", ".join(f"{m['name']} x{m['connections']}" for m in info["mixes"]),
    ]
    if info.get("interrupted"):
        lines.append("  STOPPED EARLY: interrupted (the figures cover what ran)")
    if info.get("failure"):
        lines.append(f"  FAILED: {info['failure']} (the figures cover what ran)")
    if "rss_points" not in result:
        return "\n".join([*lines, "", f"plateau: no ({result['why']})"])
    by_t = {s["t_s"]: s for s in samples}
    lines += ["", "  point    t (s)   RSS MiB   fds  threads   window rps   p99 ms   non-200 %"]
    for label, pt in result["rss_points"].items():
        s = by_t[pt["t_s"]]
        bad = sum(n for c, n in s["status"].items() if c != "200") + sum(s.get("errors", {}).values())
        share = f"{100 * bad / s['requests']:.1f}" if s["requests"] else "-"
        lines.append(
            f"  {label:>5}  {pt['t_s']:7.1f}  {pt['rss_mib']:8.1f}  {s['fds'] or '-':>4}  "
            f"{s['threads'] or '-':>7}  {s['rps'] or 0:11.1f}  {s['p99_ms'] or '-':>7}  {share:>10}"
        )
    slope = result["slope_mib_per_min"]
    lines.append("")
    if slope is not None:
        per_req = result.get("slope_bytes_per_request")
        per = (
            f"; = {per_req:+.1f} bytes per request at {result['rps']:.0f} rps" if per_req is not None else ""
        )
        lines.append(
            f"RSS slope over the second half: {slope:+.3f} MiB/min "
            f"(least squares, {result['slope_samples']} samples{per})"
        )
    if result["q2_max_mib"] is not None and result["q4_max_mib"] is not None:
        change = 100 * (result["q4_max_mib"] / result["q2_max_mib"] - 1)
        lines.append(
            f"RSS max: second quarter {result['q2_max_mib']:.1f} MiB, last quarter "
            f"{result['q4_max_mib']:.1f} MiB ({change:+.1f}%)"
        )
    status = ", ".join(
        f"{code} {n} ({100 * n / result['requests']:.1f}%)" for code, n in result["status"].items()
    )
    lines.append(f"requests: {result['requests']} ({result['rps']:.0f} rps); status: {status}")
    errors = ", ".join(f"{k} {n}" for k, n in result["errors"].items()) or "none"
    lines.append(f"no HTTP answer / bad streams: {errors}")
    lines.append("by mix:")
    for name, tally in mix_totals(samples).items():
        codes = " ".join(f"{c}:{n}" for c, n in sorted(tally.status.items()))
        errs = f"  errors {tally.errors}" if tally.errors else ""
        lines.append(f"  {name:<24} {tally.requests:>8}  [{codes}]{errs}")
    for label, stats in info.get("upstream_stats", {}).items():
        if stats:
            failed = f", {stats.get('failed', 0)} answered 500 on purpose" if stats.get("failed") else ""
            lines.append(f"upstream {label}: {stats.get('requests')} calls{failed}")
    if result.get("duration_s", 0) < 300:
        lines.append("note: under 5 minutes measured, the verdict is indicative only")
    crit = f"second-half slope < {SLOPE_LIMIT} MiB/min and last-quarter max <= {1 + QUARTER_MARGIN:.2f} x second-quarter max"
    lines += ["", f"plateau: {'yes' if result['plateau'] else 'no'}  ({result['why']}; criterion: {crit})"]
    return "\n".join(lines)


# -- orchestration


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _exited(procs: dict[str, subprocess.Popen]) -> str | None:
    for name, p in procs.items():
        if p.poll() is not None:
            return f"the {name} process exited (code {p.returncode})"
    return None


def _upstream_stats(handle: UpstreamHandle | None) -> dict | None:
    if handle is None:
        return None
    try:
        status, body = http_get(handle.port, "/__stats", timeout=2.0)
        return json.loads(body) if status == 200 else None
    except (OSError, ValueError):
        return None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="measured duration (default 10)")
    ap.add_argument("--sample-every", type=float, default=5.0, metavar="S", help="seconds between samples")
    ap.add_argument(
        "--warmup",
        type=float,
        metavar="S",
        help="unmeasured load first (default: 10%% of the run, between 3 and 30 s)",
    )
    ap.add_argument("--out", type=Path, help="JSON file (default bench/results/soak-<UTC timestamp>.json)")
    ap.add_argument(
        "--gateway-cmd",
        default=DEFAULT_GATEWAY_CMD,
        help=f"command template (default {DEFAULT_GATEWAY_CMD!r})",
    )
    args = ap.parse_args(argv)
    if args.minutes <= 0 or args.sample_every <= 0:
        ap.error("--minutes and --sample-every must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    run_s = args.minutes * 60
    every = min(args.sample_every, run_s)
    warmup_s = args.warmup if args.warmup is not None else min(30.0, max(3.0, run_s / 10))
    out_path = args.out or ROOT / "bench" / "results" / f"soak-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    info: dict = {
        "date_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": "python -m bench.soak " + " ".join(shlex.quote(a) for a in argv),
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain", "--", "gateway_server", "gatewayctl")),
        "versions": {d: _version(d) for d in ("gatewayctl", "uvicorn", "uvloop", "limits", "aiohttp")},
        "pinning": "gateway on core 0, upstreams + load on core 1" if pinning_available() else "not pinned",
        "minutes": args.minutes,
        "sample_every_s": every,
        "warmup_s": warmup_s,
        "mixes": [asdict(m) for m in MIXES],
        "fail_every": FAIL_EVERY,
        "limit_per_second": LIMIT_PER_SECOND,
        "limited_rate": LIMITED_RATE,
        "slope_limit_mib_per_min": SLOPE_LIMIT,
        "quarter_margin": QUARTER_MARGIN,
    }
    data: dict = {"warmup": [], "samples": []}
    upstream = flaky = proc = None
    failure: str | None = None
    previous_term = signal.signal(signal.SIGTERM, _interrupt)
    try:
        with tempfile.TemporaryDirectory(prefix="gatewayctl-soak-") as tmp:
            try:
                opts = UpstreamOptions(chunks=STREAM_CHUNKS, chunk_delay_ms=STREAM_CHUNK_DELAY_MS)
                hours = (run_s + warmup_s) / 3600 + 0.5
                upstream = start_upstream(opts, cpu=UPSTREAM_CPU, max_seconds=hours * 3600)
                opts.fail_every = FAIL_EVERY
                flaky = start_upstream(opts, cpu=UPSTREAM_CPU, max_seconds=hours * 3600)
                config = soak_config(upstream.port, flaky.port, free_port())
                info["config"] = config
                scenario = Scenario("soak", args.gateway_cmd, config)
                proc, port, log, startup = start_gateway(scenario, Path(tmp), 0, Plan())
                if startup < 0:
                    failure = f"gateway did not start (exit code {proc.poll()}): {read_tail(log)}"
                    return 2
                info |= {"gateway_pid": proc.pid, "startup_s": round(startup, 3)}
                print(
                    f"soak: gateway up in {startup:.2f} s; warm-up {warmup_s:.0f} s, then {run_s:.0f} s",
                    file=sys.stderr,
                    flush=True,
                )
                pin_self(UPSTREAM_CPU)
                loop = new_event_loop()
                try:
                    watched = {"gateway": proc, "upstream": upstream.proc, "flaky upstream": flaky.proc}
                    check = functools.partial(_exited, watched)
                    loop.run_until_complete(soak(proc.pid, port, warmup_s, run_s, every, data, check))
                except Stopped as exc:
                    if str(exc) == "interrupted":
                        info["interrupted"] = "interrupted"
                    else:
                        failure = str(exc)
                finally:
                    loop.close()  # removes the loop's signal handlers: SIGTERM must still interrupt
                    signal.signal(signal.SIGTERM, _interrupt)
                if proc.poll() is not None:
                    failure = f"gateway exited during the soak (code {proc.returncode}): {read_tail(log)}"
                info["upstream_stats"] = {"main": _upstream_stats(upstream), "flaky": _upstream_stats(flaky)}
            except KeyboardInterrupt:
                info["interrupted"] = "interrupted"
            finally:
                for sig in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C must not skip the clean-up
                    signal.signal(sig, signal.SIG_IGN)
                terminate(proc)
                for handle in (flaky, upstream):
                    if handle is not None:
                        handle.stop()
                unpin_self()
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, previous_term)
        if failure:
            print(f"soak: {failure}", file=sys.stderr)
    result = analyse(data["samples"])
    info["failure"] = failure
    print(report(info, data["samples"], result))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps({"meta": info, "result": result, **data}, indent=1, default=str))
    print(f"\nwrote {out_path}")
    if info.get("interrupted") == "interrupted":
        return 130
    if failure or "rss_points" not in result:
        return 2
    return 0 if result["plateau"] else 1


if __name__ == "__main__":
    sys.exit(main())
