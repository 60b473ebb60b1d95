"""Benchmark the gateway against a direct call to a fake upstream, in one run.

``python -m bench.run [--quick] [--repeats 3] [--out bench/results/<ts>.json] [--mlflow]``

1. Starts the fake upstream (``bench.upstream``) pinned to core 1 and measures it alone.
2. For each scenario and repeat, writes a gateway config into a temp dir, starts the gateway as a real
   process pinned to core 0 (``python -m gatewayctl serve CONFIG --host 127.0.0.1 --port P``), times its
   start-up to ``GET /health`` 200, then measures: added latency at c=1 (interleaved direct and gateway
   rounds), throughput and CPU per request at c=64 with one worker, streaming (added time to the first
   event and added total), memory (RSS idle and after the load), and a short run on each request path.
3. Scenarios: ``gatewayctl`` (plain routes), ``gatewayctl + features`` (auth key, route limit, metrics)
   and, with ``--mlflow``, MLflow 2.8.1's gateway on the same upstream for a side-by-side ratio.
   A scenario the gateway cannot serve is reported as "not available: <reason>", not a failure.
4. Prints a table (medians and min-max over repeats) and writes every raw figure to a JSON file.

The load generator runs in this process (pinned next to the upstream on core 1). Every process started
here is terminated in a ``finally`` block and every loop is bounded.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import yaml

from bench import measure
from bench._proc import (
    background_cpu,
    cores,
    free_port,
    pin_command,
    pinning_available,
    terminate,
    unpin_self,
    wait_healthy,
)
from bench.measure import GATEWAY_CPU, QUICK, UNPACED_ROUTE, UPSTREAM_CPU, UPSTREAM_KEY, Plan, Target
from bench.report import DIRECT_ROWS, ROWS, aggregate, markdown, table
from bench.upstream import UpstreamHandle, UpstreamOptions, start_upstream

ROOT = Path(__file__).resolve().parent.parent
GATEWAY_KEY = "gwk-bench-0123456789abcdef0123456789abcdef"
DEFAULT_GATEWAY_CMD = "{python} -m gatewayctl serve {config} --host 127.0.0.1 --port {port}"
MLFLOW_VENV = ROOT / ".cache" / "mlflow-2.8.1-venv"
MLFLOW_CMD = (
    "{venv}/bin/mlflow gateway start --config-path {config} --host 127.0.0.1 --port {port} --workers 1"
)
STANDIN_CMD = "{python} -m bench._standin_proxy {config} --host 127.0.0.1 --port {port}"
ALL_PATHS = list(measure.CALLS)
QUIET_CORES = 0.15
SEED_PATHS = ["seed chat", "seed completions", "seed embeddings"]


@dataclass
class Scenario:
    name: str
    command: str  # template: {python} {config} {port} {venv}
    config: dict
    headers: dict[str, str] = field(default_factory=dict)
    paths: list[str] = field(default_factory=lambda: list(ALL_PATHS))
    primary: str = "seed chat"
    features: bool = False
    streaming: bool = True
    profile_to: Path | None = None  # where py-spy's collapsed stacks go (first repeat only); None = off
    unpaced_port: int | None = None  # the second upstream, behind the "chat-unpaced" route


def _model(name: str, upstream_port: int) -> dict:
    return {
        "provider": "openai",
        "name": name,
        "config": {"openai_api_key": UPSTREAM_KEY, "openai_api_base": f"http://127.0.0.1:{upstream_port}/v1"},
    }


def gateway_config(
    upstream_port: int, features: bool = False, unpaced_port: int | None = None, governance: bool = False
) -> dict:
    """The routes of the benchmark (chat, completions, embeddings) pointing at the fake upstream.

    With ``unpaced_port``, also ``chat-unpaced``: chat on an upstream whose streams are not paced.
    With ``governance`` (implies ``features``): a token limit next to each call limit, a price on
    every model and a USD budget on the key, all too large to ever refuse (docs/governance.md).
    """
    routes = [
        {"name": "chat", "route_type": "llm/v1/chat", "model": _model("gpt-4o-mini", upstream_port)},
        {
            "name": "completions",
            "route_type": "llm/v1/completions",
            "model": _model("gpt-3.5-turbo-instruct", upstream_port),
        },
        {
            "name": "embeddings",
            "route_type": "llm/v1/embeddings",
            "model": _model("text-embedding-3-small", upstream_port),
        },
    ]
    if unpaced_port is not None:
        routes.append(
            {"name": UNPACED_ROUTE, "route_type": "llm/v1/chat", "model": _model("gpt-4o-mini", unpaced_port)}
        )
    config: dict = {"routes": routes}
    if features or governance:
        for route in routes:
            route["limit"] = {"calls": 100_000_000, "renewal_period": "minute"}
        config["auth"] = {"keys": [{"name": "bench", "key": GATEWAY_KEY, "scopes": ["query"]}]}
    if governance:
        for route in routes:
            route["limit"] = [
                route["limit"],
                {"tokens": 10**15, "renewal_period": "minute", "key": "api_key"},
            ]
            route["model"]["price"] = {"input": 0.15, "output": 0.60}
        config["auth"]["keys"][0]["budget"] = {"usd": 10**9, "period": "month"}
    return config


def scenarios(
    args: argparse.Namespace, upstream_port: int, unpaced_port: int, out_path: Path
) -> list[Scenario]:
    todo = [replace(sc, unpaced_port=unpaced_port) for sc in _scenarios(args, upstream_port, unpaced_port)]
    if args.profile:
        todo = [
            replace(sc, profile_to=out_path.with_suffix(f".{_slug(sc.name)}.collapsed.txt")) for sc in todo
        ]
    return todo


def _scenarios(args: argparse.Namespace, upstream_port: int, unpaced_port: int) -> list[Scenario]:
    plain = gateway_config(upstream_port, unpaced_port=unpaced_port)
    out = [Scenario("gatewayctl", args.gateway_cmd, plain, primary=args.primary)]
    if not args.no_features:
        out.append(
            Scenario(
                "gatewayctl + features",
                args.gateway_cmd,
                gateway_config(upstream_port, features=True, unpaced_port=unpaced_port),
                headers={"Authorization": f"Bearer {GATEWAY_KEY}"},
                primary=args.primary,
                features=True,
            )
        )
    if args.standin:
        out.append(
            Scenario(
                "stand-in proxy",
                STANDIN_CMD,
                plain,
                paths=[
                    "seed chat",
                    "endpoints chat",
                    "openai chat",
                    "openai completions",
                    "openai embeddings",
                ],
                primary=args.primary,
            )
        )
    if args.mlflow:
        out.append(
            Scenario(
                "mlflow 2.8.1",
                MLFLOW_CMD,
                gateway_config(upstream_port),
                paths=SEED_PATHS,
                primary="seed chat",
                streaming=False,
            )
        )
    return out


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name)


def start_gateway(
    sc: Scenario, workdir: Path, repeat: int, plan: Plan
) -> tuple[subprocess.Popen, int, Path, float]:
    """Write the config, start the gateway pinned to core 0, and time its start-up."""
    config = workdir / f"{_slug(sc.name)}.yaml"
    config.write_text(yaml.safe_dump(sc.config, sort_keys=False))
    port = free_port()
    values = {"python": sys.executable, "config": str(config), "port": str(port), "venv": str(MLFLOW_VENV)}
    cmd = [part.format(**values) for part in shlex.split(sc.command)]
    log = workdir / f"{_slug(sc.name)}-{repeat}.log"
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "PYTHONPATH": str(ROOT)}
    with open(log, "wb") as fh:
        started = time.perf_counter()
        proc = subprocess.Popen(
            pin_command(cmd, GATEWAY_CPU), stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env, cwd=ROOT, start_new_session=True,
        )  # fmt: skip
    took = wait_healthy(proc, port, plan.startup_timeout, start=started)
    return proc, port, log, took if took is not None else -1.0


def run_scenario(sc: Scenario, upstream: UpstreamHandle, plan: Plan, workdir: Path, repeat: int) -> dict:
    proc = None
    try:
        proc, port, log, startup = start_gateway(sc, workdir, repeat, plan)
        if startup < 0:
            rc = proc.poll()
            why = (
                f"exited with code {rc}"
                if rc is not None
                else f"no /health 200 within {plan.startup_timeout}s"
            )
            return {"error": f"not available: {why}: {measure.read_tail(log)}"}
        target = Target(port, proc.pid, upstream.port, upstream.pid, sc.headers, sc.primary, sc.unpaced_port)
        figures = measure_gateway(sc, target, plan, round(startup, 3))
        if sc.profile_to is not None and repeat == 0 and "tput_rps" in figures:
            figures["profile"] = run_profile(target, plan, sc.profile_to)
        if proc.poll() is not None:
            figures["error"] = (
                f"gateway exited during the run (code {proc.returncode}): {measure.read_tail(log)}"
            )
        return figures
    finally:
        terminate(proc)


def run_profile(t: Target, plan: Plan, out: Path) -> dict:
    from bench.profile import profile

    def drive(seconds: float) -> None:
        measure.throughput(t, replace(plan, tput_seconds=seconds))

    print(
        f"  profiling pid {t.pid} with py-spy for {plan.profile_seconds:.0f} s", file=sys.stderr, flush=True
    )
    return profile(t.pid, plan.profile_seconds, out, UPSTREAM_CPU, drive)


def measure_gateway(sc: Scenario, t: Target, plan: Plan, startup: float) -> dict:
    out: dict = {"startup_s": startup}
    time.sleep(0.3)  # let start-up work settle before reading the idle RSS
    out |= measure.memory(t.pid, "idle")
    why = measure.check_call(t.port, measure.CALLS[sc.primary], sc.headers)
    if why is not None:
        out["error"] = f"not available: {measure.CALLS[sc.primary].path}: {why}"
        return out
    out |= measure.added_latency(t, plan)
    out |= measure.throughput(t, plan)
    if sc.streaming:
        out |= measure.streaming(t, plan)
    else:
        out["stream_error"] = "not available: this gateway does not stream"
    out |= measure.path_matrix(t, plan, sc.paths)
    out |= measure.memory(t.pid, "after")
    out |= measure.feature_checks(t) if sc.features else measure.metrics_check(t.port)
    return out


def wait_quiet(max_wait: float) -> dict:
    """Measure what the rest of the machine uses (1 s samples), waiting up to ``max_wait`` s for it to calm down."""
    deadline = time.monotonic() + max_wait
    sample = background_cpu(1.0)
    while sample.get("busy_cores", 0) > QUIET_CORES and time.monotonic() < deadline:
        sample = background_cpu(1.0)
    return {"background_" + k: v for k, v in sample.items()}


def direct_figures(upstream: UpstreamHandle, plan: Plan) -> dict:
    """The upstream alone (load generator on the other core), then with the generator beside it."""
    other = measure.direct_throughput(upstream.port, upstream.pid, plan, GATEWAY_CPU)
    same = measure.direct_throughput(upstream.port, upstream.pid, plan, UPSTREAM_CPU)
    return other | {"same_core_rps": same["rps"]} | measure.hop_cost(upstream.port, plan)


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def _cpu_model() -> str | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return None


def meta(argv: list[str], plan: Plan) -> dict:
    return {
        "date_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": "python -m bench.run " + " ".join(shlex.quote(a) for a in argv),
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain", "--", "gateway_server", "gatewayctl")),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "cpu": _cpu_model(),
        "cores": cores(),
        "pinning": "taskset: gateway on core 0, upstream + load generator on core 1"
        if pinning_available()
        else "none (fewer than 2 cores or no sched_setaffinity): figures are contended",
        "versions": {
            d: _version(d) for d in ("gatewayctl", "uvicorn", "uvloop", "httptools", "aiohttp", "orjson")
        },
        "plan": asdict(plan),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--quick", action="store_true", help="a short smoke-test run (a few seconds per scenario)"
    )
    ap.add_argument("--repeats", type=int, help="repeats per scenario (default 3, --quick 1)")
    ap.add_argument("--out", type=Path, help="JSON file (default bench/results/<UTC timestamp>.json)")
    ap.add_argument("--mlflow", action="store_true", help=f"also measure MLflow 2.8.1 from {MLFLOW_VENV}")
    ap.add_argument(
        "--standin",
        action="store_true",
        help="also measure bench/_standin_proxy.py (the floor of this design)",
    )
    ap.add_argument("--no-features", action="store_true", help="skip the features-on scenario")
    ap.add_argument(
        "--primary", default="seed chat", choices=list(measure.CALLS), help="path for c=1 and c=64"
    )
    ap.add_argument(
        "--gateway-cmd",
        default=DEFAULT_GATEWAY_CMD,
        help=f"command template (default: {DEFAULT_GATEWAY_CMD!r})",
    )
    ap.add_argument(
        "--wait-quiet", type=float, default=0.0, metavar="S",
        help=f"before each repeat wait up to S seconds for other processes to use < {QUIET_CORES} cores",
    )  # fmt: skip
    ap.add_argument(
        "--retry-noisy", type=int, default=1, metavar="N",
        help=f"measure a scenario again (up to N times) if other jobs used > {QUIET_CORES} cores meanwhile",
    )  # fmt: skip
    ap.add_argument(
        "--profile",
        action="store_true",
        help="after the measurements, sample each gateway with py-spy at c=64",
    )
    ap.add_argument("--markdown", action="store_true", help="also print the table as Markdown")
    return ap.parse_args(argv)


def run(args: argparse.Namespace, plan: Plan, workdir: Path, out_path: Path) -> dict:
    direct_raw: list[dict] = []
    raw: dict[str, list[dict]] = {}
    upstream = unpaced = None
    try:
        upstream = start_upstream(
            UpstreamOptions(chunks=plan.stream_chunks, chunk_delay_ms=plan.stream_chunk_delay_ms),
            cpu=UPSTREAM_CPU,
            max_seconds=4 * 3600,
        )
        unpaced = start_upstream(
            UpstreamOptions(chunks=plan.stream_chunks), cpu=UPSTREAM_CPU, max_seconds=4 * 3600
        )
        todo = scenarios(args, upstream.port, unpaced.port, out_path)
        if args.mlflow:
            todo = _with_mlflow_checked(todo)
        for rep in range(plan.repeats):
            print(f"repeat {rep + 1}/{plan.repeats}: upstream alone", file=sys.stderr, flush=True)
            quiet = wait_quiet(args.wait_quiet)
            direct_raw.append(quiet | direct_figures(upstream, plan))
            for sc in todo:
                print(f"repeat {rep + 1}/{plan.repeats}: {sc.name}", file=sys.stderr, flush=True)
                raw.setdefault(sc.name, []).append(measured(sc, upstream, plan, workdir, rep, args))
    finally:
        for handle in (upstream, unpaced):
            if handle is not None:
                handle.stop()
        unpin_self()
    return {"direct": direct_raw, "scenarios": raw}


def measured(
    sc: Scenario, upstream: UpstreamHandle, plan: Plan, workdir: Path, rep: int, args: argparse.Namespace
) -> dict:
    """One scenario repeat, measured again (at most ``--retry-noisy`` times) if other jobs used the cores.

    Keeps the attempt during which other processes used the least CPU, and says how many it discarded.
    """
    best: dict | None = None
    attempts = 1 + max(0, args.retry_noisy)
    for attempt in range(attempts):
        if args.wait_quiet > 0:
            wait_quiet(args.wait_quiet)
        figures = _scenario_or_note(sc, upstream, plan, workdir, rep)
        noise = figures.get("other_cpu_share_during_c64")
        if best is None or (
            noise is not None and noise < best.get("other_cpu_share_during_c64", float("inf"))
        ):
            best = figures
        if noise is None or noise <= QUIET_CORES:
            break
        if attempt + 1 < attempts:
            print(
                f"  other jobs used {noise:.2f} cores during c=64: measuring again",
                file=sys.stderr,
                flush=True,
            )
    best["noisy_attempts_discarded"] = attempt
    return best


def _scenario_or_note(sc: Scenario, upstream: UpstreamHandle, plan: Plan, workdir: Path, rep: int) -> dict:
    if sc.command.startswith("!"):  # a scenario that could not be set up: the reason follows the "!"
        return {"error": sc.command[1:]}
    return run_scenario(sc, upstream, plan, workdir, rep)


def _with_mlflow_checked(todo: list[Scenario]) -> list[Scenario]:
    from bench.mlflow_env import ensure_mlflow

    problem = ensure_mlflow(MLFLOW_VENV)
    if problem is None:
        return todo
    return [
        replace(sc, command=f"!not available: {problem}") if sc.name.startswith("mlflow") else sc
        for sc in todo
    ]


def summarise(raw: dict, mlflow: bool) -> tuple[dict, str]:
    columns = {name: aggregate(reps) for name, reps in raw["scenarios"].items()}
    direct = aggregate(raw["direct"])
    ratio = ("gatewayctl", "mlflow 2.8.1") if mlflow and "mlflow 2.8.1" in columns else None
    lines = ["", "Gateway vs direct upstream (median of repeats, min-max in brackets)", ""]
    lines.append(table(columns, ROWS, ratio))
    lines += ["", "Fake upstream and load generator (to show neither is the bottleneck)", ""]
    lines.append(table({"direct": direct}, DIRECT_ROWS, None))
    lines += ["", *checks(columns, direct)]
    notes = _notes(columns)
    if notes:
        lines += ["", "Not available / errors:", *notes]
    lines += ["", "Request paths, c=64 rps:", table(columns, _path_rows(columns), None)]
    lines += profiles(raw["scenarios"])
    return {"scenarios": columns, "direct": direct}, "\n".join(lines)


def profiles(raw: dict[str, list[dict]]) -> list[str]:
    out = []
    for name, reps in raw.items():
        prof = reps[0].get("profile") if reps else None
        if not prof:
            continue
        out += ["", f"Profile of {name} at c=64 (py-spy, share of self time):"]
        if "samples" not in prof:
            out.append(f"  {prof.get('profile')}")
            continue
        pkgs = ", ".join(f"{k} {v}%" for k, v in list(prof.get("self_by_package_pct", {}).items())[:8])
        out.append(f"  by package: {pkgs}  ({prof['samples']} samples)")
        out += [f"  {v:5.1f}%  {k}" for k, v in list(prof.get("top_self_pct", {}).items())[:12]]
    return out


def _path_rows(columns: dict[str, dict]) -> list[tuple[str, str, str]]:
    keys: list[str] = []
    for col in columns.values():
        keys += [k for k in col if k.startswith("path_rps ") and k not in keys]
    return [(k, k.removeprefix("path_rps "), "rps") for k in keys]


def _notes(columns: dict[str, dict]) -> list[str]:
    out = []
    for name, col in columns.items():
        for key, agg in col.items():
            for v in agg.get("values", []):
                if isinstance(v, str) and (v.startswith("not available") or key.endswith("error")):
                    out.append(f"  {name}: {key}: {v[:300]}")
    return out


def _median(col: dict, key: str) -> float | None:
    return col.get(key, {}).get("median")


def checks(columns: dict[str, dict], direct: dict) -> list[str]:
    """Validity checks: is the gateway (not the upstream or the load generator) what limits throughput?"""
    out = ["Validity checks:"]
    capacity = _median(direct, "upstream_capacity_rps")
    background = direct.get("background_busy_cores", {}).get("max")
    if background is not None:
        state = "quiet" if background <= QUIET_CORES else "BUSY: other jobs were running, figures are noisy"
        out.append(
            f"  machine before the repeats: other processes used up to {background:.2f} cores ({state})"
        )
    for name, col in columns.items():
        rps = _median(col, "tput_rps")
        if rps is None:
            continue
        if capacity:
            verdict = "MOCK-BOUND (within 10% of the upstream's capacity)" if rps > 0.9 * capacity else "ok"
            out.append(f"  {name}: upstream capacity / gateway rps = {capacity / rps:.1f}x -> {verdict}")
        share = _median(col, "gateway_cpu_share")
        if share is not None:
            out.append(f"  {name}: gateway used {share:.2f} of its core at c=64 (near 1.0 = gateway-bound)")
        gen = _median(col, "loadgen_cpu_share")
        if gen is not None:
            out.append(f"  {name}: load generator used {gen:.2f} of a core at c=64")
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    plan = replace(QUICK) if args.quick else Plan()
    if args.repeats:
        plan.repeats = max(1, args.repeats)
    out_path = args.out or ROOT / "bench" / "results" / f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    info = meta(argv, plan)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gatewayctl-bench-") as tmp:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        raw = run(args, plan, Path(tmp), out_path)
    summary, text = summarise(raw, args.mlflow)
    info["wall_s"] = round(time.perf_counter() - started, 1)
    print(text)
    if args.markdown:
        print(
            "\n"
            + markdown(summary["scenarios"], ROWS)
            + "\n\n"
            + markdown({"direct": summary["direct"]}, DIRECT_ROWS)
        )
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps({"meta": info, "summary": summary, "raw": raw}, indent=1, default=str))
    print(f"\nwrote {out_path} ({info['wall_s']} s)")
    available = [c for c in summary["scenarios"].values() if "tput_rps" in c]
    return 0 if available else 1


if __name__ == "__main__":
    sys.exit(main())
