"""The measurements of one benchmark scenario: a gateway process in front of the fake upstream.

Every function returns a flat ``dict`` of figures (numbers, or a string saying why a figure is not
available), so repeats can be aggregated key by key.
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from bench._proc import cpu_seconds, http_get, http_post, pin_self, rss_mib, system_cpu
from bench.load import CHAT_BODY, LoadResult, LoadSpec, percentile, run_load_sync

GATEWAY_CPU = 0  # the gateway under test runs alone on core 0
UPSTREAM_CPU = 1  # the fake upstream and the load generator share core 1

MESSAGES = CHAT_BODY["messages"]
PROMPT = "In two sentences, what does an LLM gateway do for a team?"
EMBED_INPUT = ["An LLM gateway keeps provider keys in one place."]


@dataclass(frozen=True)
class Call:
    """One way of calling a route: a path, a body, the direct upstream equivalent and a shape check."""

    kind: str  # chat | completions | embeddings
    path: str
    body: dict
    check: Callable[[dict], bool]


def _chat_seed_ok(o: dict) -> bool:
    return isinstance(o["candidates"][0]["message"]["content"], str)


def _chat_openai_ok(o: dict) -> bool:
    return o["object"] == "chat.completion" and isinstance(o["choices"][0]["message"]["content"], str)


def _messages_ok(o: dict) -> bool:
    return o["type"] == "message" and isinstance(o["content"][0]["text"], str)


def _compl_seed_ok(o: dict) -> bool:
    return isinstance(o["candidates"][0]["text"], str)


def _compl_openai_ok(o: dict) -> bool:
    return o["object"] == "text_completion" and isinstance(o["choices"][0]["text"], str)


def _embed_seed_ok(o: dict) -> bool:
    return isinstance(o["embeddings"][0][0], float)


def _embed_openai_ok(o: dict) -> bool:
    return o["object"] == "list" and isinstance(o["data"][0]["embedding"][0], float)


SEED_CHAT = {"messages": MESSAGES, "temperature": 0.2, "max_tokens": 128}
CALLS: dict[str, Call] = {
    "seed chat": Call("chat", "/gateway/chat/invocations", SEED_CHAT, _chat_seed_ok),
    "endpoints chat": Call("chat", "/endpoints/chat/invocations", SEED_CHAT, _chat_openai_ok),
    "openai chat": Call("chat", "/v1/chat/completions", {**SEED_CHAT, "model": "chat"}, _chat_openai_ok),
    "seed completions": Call(
        "completions",
        "/gateway/completions/invocations",
        {"prompt": PROMPT, "max_tokens": 128},
        _compl_seed_ok,
    ),
    "openai completions": Call(
        "completions",
        "/v1/completions",
        {"model": "completions", "prompt": PROMPT, "max_tokens": 128},
        _compl_openai_ok,
    ),
    "seed embeddings": Call(
        "embeddings", "/gateway/embeddings/invocations", {"text": EMBED_INPUT}, _embed_seed_ok
    ),
    "openai embeddings": Call(
        "embeddings", "/v1/embeddings", {"model": "embeddings", "input": EMBED_INPUT}, _embed_openai_ok
    ),
    # The same chat request in Anthropic's Messages shape, translated to the route's OpenAI upstream.
    "anthropic messages": Call(
        "chat",
        "/v1/messages",
        {
            "model": "chat",
            "system": MESSAGES[0]["content"],
            "messages": MESSAGES[1:],
            "temperature": 0.2,
            "max_tokens": 128,
        },
        _messages_ok,
    ),
}
# what the same request looks like when sent straight to the upstream
DIRECT = {
    "chat": ("/v1/chat/completions", dict(CHAT_BODY)),
    "completions": (
        "/v1/completions",
        {"model": "gpt-3.5-turbo-instruct", "prompt": PROMPT, "max_tokens": 128},
    ),
    "embeddings": ("/v1/embeddings", {"model": "text-embedding-3-small", "input": EMBED_INPUT}),
}
STREAM_CALLS = [
    Call("chat", "/v1/chat/completions", {**SEED_CHAT, "model": "chat", "stream": True}, _chat_openai_ok),
    Call("chat", "/endpoints/chat/invocations", {**SEED_CHAT, "stream": True}, _chat_openai_ok),
]
UPSTREAM_KEY = "sk-bench-not-a-secret"
UNPACED_ROUTE = "chat-unpaced"


@dataclass
class Plan:
    """How much of each measurement to do (``--quick`` shrinks it to a smoke test)."""

    repeats: int = 3
    lat_rounds: int = 7  # interleaved direct/gateway rounds at c=1
    lat_requests: int = 200  # measured requests per round and side
    lat_warmup: int = 20
    tput_concurrency: int = 64
    tput_seconds: float = 10.0
    direct_seconds: float = 5.0
    stream_rounds: int = 7
    stream_requests: int = 10
    stream_chunks: int = 32
    stream_chunk_delay_ms: float = 5.0
    matrix_seconds: float = 3.0
    profile_seconds: float = 8.0  # only with --profile
    startup_timeout: float = 60.0
    timeout: float = 10.0


QUICK = Plan(
    repeats=1, lat_rounds=3, lat_requests=50, lat_warmup=10, tput_seconds=2.0, direct_seconds=1.0,
    stream_rounds=3, stream_requests=3, stream_chunks=8, stream_chunk_delay_ms=2.0, matrix_seconds=0.5,
    profile_seconds=3.0,
)  # fmt: skip


@dataclass
class Target:
    """A gateway under test, already running."""

    port: int
    pid: int
    upstream_port: int
    upstream_pid: int
    headers: dict[str, str] = field(default_factory=dict)
    primary: str = "seed chat"
    unpaced_port: int | None = None  # an upstream whose streams are not paced (route "chat-unpaced")


def _loads(body: bytes) -> dict:
    return json.loads(body) if body else {}


def check_call(port: int, call: Call, headers: dict[str, str]) -> str | None:
    """None if ``call`` answers 200 with the right shape, else the reason it does not."""
    try:
        status, _, body = http_post(port, call.path, json.dumps(call.body).encode(), headers)
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"
    if status != 200:
        return f"HTTP {status}: {body[:200].decode(errors='replace')}"
    try:
        if call.check(_loads(body)):
            return None
    except (ValueError, KeyError, IndexError, TypeError):
        pass
    return f"unexpected answer shape: {body[:200].decode(errors='replace')}"


def check_stream_call(port: int, call: Call, headers: dict[str, str]) -> str | None:
    try:
        status, hdrs, body = http_post(port, call.path, json.dumps(call.body).encode(), headers)
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"
    if status != 200:
        return f"HTTP {status}: {body[:160].decode(errors='replace')}"
    if not hdrs.get("content-type", "").startswith("text/event-stream"):
        return f"answered {hdrs.get('content-type')!r}, not text/event-stream"
    if not body.startswith(b"data:") or b"data: [DONE]" not in body:
        return f"not an SSE stream ending in [DONE]: {body[:120]!r}"
    return None


def _spec(port: int, path: str, body: dict, headers: dict[str, str], **kw) -> LoadSpec:
    return LoadSpec(port=port, path=path, body=json.dumps(body).encode(), headers=headers, **kw)


def _median_ms(res: LoadResult, first_event: bool = False) -> float | None:
    values = sorted(res.first_event_ns if first_event else res.latencies_ns)
    return None if not values else statistics.median(values) / 1e6


def _iqr(values: list[float]) -> float | None:
    if len(values) < 4:
        return None
    q = statistics.quantiles(values, n=4)
    return q[2] - q[0]


def _r(value: float | None, nd: int = 4) -> float | None:
    return None if value is None else round(value, nd)


def interleaved(direct: LoadSpec, via: LoadSpec, rounds: int) -> tuple[list[LoadResult], list[LoadResult]]:
    """ABAB... rounds at c=1; the side that goes first alternates so neither always runs warmer."""
    d_runs, g_runs = [], []
    for i in range(rounds):
        if i % 2 == 0:
            d_runs.append(run_load_sync(direct))
            g_runs.append(run_load_sync(via))
        else:
            g_runs.append(run_load_sync(via))
            d_runs.append(run_load_sync(direct))
    return d_runs, g_runs


def _pooled(runs: list[LoadResult], first_event: bool = False) -> list[int]:
    out: list[int] = []
    for r in runs:
        out.extend(r.first_event_ns if first_event else r.latencies_ns)
    return sorted(out)


def _errors(runs: list[LoadResult]) -> int:
    return sum(r.errors for r in runs)


def _first_error(runs: list[LoadResult]) -> str:
    for r in runs:
        if r.error_kinds:
            return next(iter(r.error_kinds))
    return "no successful request"


def added_latency(t: Target, plan: Plan) -> dict:
    """c=1 added latency: median of per-round (gateway median - direct median), and the pooled p99 delta."""
    call = CALLS[t.primary]
    d_path, d_body = DIRECT[call.kind]
    common = {"concurrency": 1, "requests": plan.lat_requests, "duration": 60, "warmup": plan.lat_warmup}
    direct = _spec(t.upstream_port, d_path, d_body, {"Authorization": f"Bearer {UPSTREAM_KEY}"}, **common)
    header = overhead_header(t, call)
    via = _spec(t.port, call.path, call.body, t.headers, **common, capture_header=header)
    pin_self(UPSTREAM_CPU)
    d_runs, g_runs = interleaved(direct, via, plan.lat_rounds)
    d_med = [_median_ms(r) for r in d_runs]
    g_med = [_median_ms(r) for r in g_runs]
    if None in d_med or None in g_med:
        return {"c1_error": f"not available: {_first_error(g_runs + d_runs)}"}
    deltas = [g - d for g, d in zip(g_med, d_med, strict=True)]
    d_all, g_all = _pooled(d_runs), _pooled(g_runs)
    out = {
        "c1_direct_p50_ms": _r(statistics.median(d_med)),
        "c1_gateway_p50_ms": _r(statistics.median(g_med)),
        "c1_added_p50_ms": _r(statistics.median(deltas)),
        "c1_added_p50_iqr_ms": _r(_iqr(deltas)),
        "c1_direct_p99_ms": _r(percentile(d_all, 99) / 1e6),
        "c1_gateway_p99_ms": _r(percentile(g_all, 99) / 1e6),
        "c1_added_p99_ms": _r((percentile(g_all, 99) - percentile(d_all, 99)) / 1e6),
        "c1_errors": _errors(d_runs + g_runs),
        "c1_requests_per_side": len(g_all),
    }
    if header:
        out |= {"c1_self_reported_header": header} | self_reported(g_runs)
    return out


_OVERHEAD_RE = re.compile(r"overhead|gateway-(time|duration|latency)|x-process-time|server-timing", re.I)


def overhead_header(t: Target, call: Call) -> str | None:
    """The name of a response header in which the gateway reports its own overhead, if it sends one."""
    try:
        _, hdrs, _ = http_post(t.port, call.path, json.dumps(call.body).encode(), t.headers)
    except OSError:
        return None
    return next((name for name in hdrs if _OVERHEAD_RE.search(name)), None)


def self_reported(runs: list[LoadResult]) -> dict:
    """Median of the gateway's self-reported overhead header, to cross-check against the external delta."""
    values = []
    for r in runs:
        for raw in r.header_values:
            m = re.search(rb"[-+]?\d+(\.\d+)?", raw)
            if m:
                values.append(float(m.group()))
    if not values:
        return {}
    return {"c1_self_reported_overhead_median": round(statistics.median(values), 4)}


def _upstream_calls(port: int) -> int | None:
    try:
        status, body = http_get(port, "/__stats", timeout=2)
    except OSError:
        return None
    return json.loads(body)["requests"] if status == 200 else None


def throughput(t: Target, plan: Plan) -> dict:
    """Closed-loop c=64 (by default) through the gateway; gateway CPU per request from /proc."""
    call = CALLS[t.primary]
    spec = _spec(
        t.port, call.path, call.body, t.headers, concurrency=plan.tput_concurrency, requests=10_000_000,
        duration=plan.tput_seconds, warmup=2, timeout=plan.timeout,
    )  # fmt: skip
    marks: dict[str, float | None] = {}

    def start() -> None:
        marks["g0"], marks["u0"] = cpu_seconds(t.pid), cpu_seconds(t.upstream_pid)
        marks["s0"], marks["t0"] = system_cpu() or (None, None)

    def stop() -> None:
        marks["g1"], marks["u1"] = cpu_seconds(t.pid), cpu_seconds(t.upstream_pid)
        marks["s1"], marks["t1"] = system_cpu() or (None, None)

    pin_self(UPSTREAM_CPU)
    calls0 = _upstream_calls(t.upstream_port)
    res = run_load_sync(spec, start, stop)
    calls1 = _upstream_calls(t.upstream_port)
    s = res.summary()
    out = {
        "tput_rps": s["rps"],
        "tput_p50_ms": s["p50_ms"],
        "tput_p99_ms": s["p99_ms"],
        "tput_errors": res.errors,
        "loadgen_cpu_share": s["loadgen_cpu_share"],
        "loadgen_cpu_us_per_request": s["loadgen_cpu_us_per_request"],
    }
    if res.errors:
        out["tput_first_error"] = next(iter(res.error_kinds))
    g = _delta(marks, "g")
    u = _delta(marks, "u")
    if g is not None and res.ok:
        out["gateway_cpu_us_per_request"] = round(g / res.ok * 1e6, 1)
        out["gateway_cpu_share"] = round(g / res.elapsed_s, 3)
    if u is not None and res.elapsed_s:
        out["upstream_cpu_share_under_gateway_load"] = round(u / res.elapsed_s, 3)
    out |= _others(marks, [g, u, res.cpu_s], res.elapsed_s)
    if calls0 is not None and calls1 is not None and res.ok:
        # warm-up requests are not in res.ok: count them in so 1.00 means one upstream call per request
        sent = res.ok + res.errors + plan.tput_concurrency * spec.warmup
        out["upstream_calls_per_request"] = round((calls1 - calls0) / sent, 3)
    return out


def _others(marks: dict[str, float | None], ours: list[float | None], elapsed: float) -> dict:
    """CPU used by processes that are not part of the benchmark (other jobs on a shared machine), and steal."""
    busy, steal = _delta(marks, "s"), _delta(marks, "t")
    if busy is None or steal is None or None in ours or elapsed <= 0:
        return {}
    other = max(0.0, busy - sum(x for x in ours if x is not None))
    return {
        "other_cpu_share_during_c64": round(other / elapsed, 3),
        "steal_share_during_c64": round(steal / elapsed, 3),
    }


def _delta(marks: dict[str, float | None], who: str) -> float | None:
    a, b = marks.get(f"{who}0"), marks.get(f"{who}1")
    return None if a is None or b is None else b - a


def direct_throughput(upstream_port: int, upstream_pid: int, plan: Plan, loadgen_cpu: int | None) -> dict:
    """The upstream alone at c=64: its rps and CPU per request (to show it is not the bottleneck)."""
    path, body = DIRECT["chat"]
    spec = _spec(
        upstream_port, path, body, {"Authorization": f"Bearer {UPSTREAM_KEY}"},
        concurrency=plan.tput_concurrency, requests=10_000_000, duration=plan.direct_seconds, warmup=2,
    )  # fmt: skip
    marks: dict[str, float | None] = {}
    pin_self(loadgen_cpu)
    res = run_load_sync(
        spec,
        lambda: marks.update(u0=cpu_seconds(upstream_pid)),
        lambda: marks.update(u1=cpu_seconds(upstream_pid)),
    )
    s = res.summary()
    u = _delta(marks, "u")
    where = "same core as upstream" if loadgen_cpu == UPSTREAM_CPU else "other core"
    out = {
        "rps": s["rps"],
        "p50_ms": s["p50_ms"],
        "p99_ms": s["p99_ms"],
        "errors": res.errors,
        "loadgen_placement": where,
        "loadgen_cpu_share": s["loadgen_cpu_share"],
    }
    if u is not None and res.ok:
        out["upstream_cpu_us_per_request"] = round(u / res.ok * 1e6, 2)
        out["upstream_cpu_share"] = round(u / res.elapsed_s, 3)
        out["upstream_capacity_rps"] = round(res.ok / u) if u > 0 else None
    return out


def hop_cost(upstream_port: int, plan: Plan) -> dict:
    """c=1 direct p50 with the load generator on the upstream's core and on the other core.

    The gateway path crosses cores four times per request (generator -> gateway -> upstream -> gateway ->
    generator) where the direct path crosses none; half the difference between these two figures is what
    one cross-core wake-up costs on this machine (on a VM it can be tens of microseconds).
    """
    path, body = DIRECT["chat"]
    spec = _spec(
        upstream_port, path, body, {}, concurrency=1, requests=plan.lat_requests, warmup=plan.lat_warmup
    )
    out = {}
    for label, cpu in (("same_core", UPSTREAM_CPU), ("cross_core", GATEWAY_CPU)):
        pin_self(cpu)
        out[f"c1_{label}_p50_ms"] = _r(_median_ms(run_load_sync(spec)))
    if out["c1_same_core_p50_ms"] is not None and out["c1_cross_core_p50_ms"] is not None:
        out["cross_core_hop_ms"] = _r((out["c1_cross_core_p50_ms"] - out["c1_same_core_p50_ms"]) / 2)
    return out


def find_stream_call(t: Target) -> tuple[Call | None, str]:
    reasons = []
    for call in STREAM_CALLS:
        why = check_stream_call(t.port, call, t.headers)
        if why is None:
            return call, ""
        reasons.append(f"{call.path}: {why}")
    return None, "; ".join(reasons)


def _unpaced(call: Call) -> Call:
    """The same streaming call on the ``chat-unpaced`` route (its upstream sends all events at once)."""
    if call.path.startswith("/v1/"):
        return replace(call, body={**call.body, "model": UNPACED_ROUTE})
    return replace(call, path=call.path.replace("/chat/", f"/{UNPACED_ROUTE}/"))


def _stream_pair(via: LoadSpec, direct: LoadSpec, rounds: int, prefix: str) -> dict:
    d_runs, g_runs = interleaved(direct, via, rounds)
    d_first = [_median_ms(r, True) for r in d_runs]
    g_first = [_median_ms(r, True) for r in g_runs]
    d_total = [_median_ms(r) for r in d_runs]
    g_total = [_median_ms(r) for r in g_runs]
    if None in d_first + g_first + d_total + g_total:
        return {f"{prefix}_error": f"not available: {_first_error(g_runs + d_runs)}"}
    d_ok = sum(r.ok for r in d_runs)
    g_ok = sum(r.ok for r in g_runs)
    return {
        f"{prefix}_direct_first_event_ms": _r(statistics.median(d_first)),
        f"{prefix}_gateway_first_event_ms": _r(statistics.median(g_first)),
        f"{prefix}_added_first_event_ms": _r(
            statistics.median(g - d for g, d in zip(g_first, d_first, strict=True))
        ),
        f"{prefix}_direct_total_ms": _r(statistics.median(d_total)),
        f"{prefix}_added_total_ms": _r(
            statistics.median(g - d for g, d in zip(g_total, d_total, strict=True))
        ),
        f"{prefix}_events_direct": round(sum(r.events for r in d_runs) / d_ok, 1) if d_ok else None,
        f"{prefix}_events_gateway": round(sum(r.events for r in g_runs) / g_ok, 1) if g_ok else None,
        f"{prefix}_errors": _errors(d_runs + g_runs),
    }


def streaming(t: Target, plan: Plan) -> dict:
    """c=1 streams, interleaved with direct ones: added time to the first ``data:`` event and to the end.

    Paced (the upstream waits between events, like a model) for the time to first event, and, when the
    gateway has the ``chat-unpaced`` route, unpaced (all events at once) for the cost of each event.
    """
    call, why = find_stream_call(t)
    if call is None:
        return {"stream_error": f"not available: {why}"}
    d_path, d_body = DIRECT["chat"][0], {**DIRECT["chat"][1], "stream": True}
    auth = {"Authorization": f"Bearer {UPSTREAM_KEY}"}
    common = {
        "concurrency": 1,
        "requests": plan.stream_requests,
        "duration": 120,
        "warmup": 1,
        "stream": True,
    }
    pin_self(UPSTREAM_CPU)
    direct = _spec(t.upstream_port, d_path, d_body, auth, **common)
    via = _spec(t.port, call.path, call.body, t.headers, **common)
    out = {"stream_path": call.path} | _stream_pair(via, direct, plan.stream_rounds, "stream")
    if t.unpaced_port is None:
        return out
    fast = _unpaced(call)
    why = check_stream_call(t.port, fast, t.headers)
    if why is not None:
        return out | {"stream_unpaced_error": f"not available: {why}"}
    common["requests"] = plan.stream_requests * 4
    direct = _spec(t.unpaced_port, d_path, d_body, auth, **common)
    via = _spec(t.port, fast.path, fast.body, t.headers, **common)
    out |= _stream_pair(via, direct, plan.stream_rounds, "stream_unpaced")
    # the events after the first: what the gateway adds per forwarded event, fixed request cost excluded
    total, first = out.get("stream_unpaced_added_total_ms"), out.get("stream_unpaced_added_first_event_ms")
    events = out.get("stream_unpaced_events_gateway")
    if total is not None and first is not None and events and events > 1:
        out["stream_unpaced_added_per_event_us"] = round((total - first) * 1000 / (events - 1), 1)
    return out


def path_matrix(t: Target, plan: Plan, names: list[str]) -> dict:
    """A short c=64 run on each request path the gateway serves (shape-checked first)."""
    out: dict = {}
    pin_self(UPSTREAM_CPU)
    for name in names:
        call = CALLS[name]
        why = check_call(t.port, call, t.headers)
        key = "path_rps " + name
        if why is not None:
            out[key] = f"not available: {why}"
            continue
        spec = _spec(
            t.port, call.path, call.body, t.headers, concurrency=plan.tput_concurrency, requests=10_000_000,
            duration=plan.matrix_seconds, warmup=1,
        )  # fmt: skip
        res = run_load_sync(spec)
        out[key] = (
            round(res.rps, 1) if not res.errors else f"errors: {res.errors} ({next(iter(res.error_kinds))})"
        )
    return out


def memory(pid: int, label: str) -> dict:
    value = rss_mib(pid)
    return {f"rss_{label}_mib": round(value, 1) if value is not None else None}


def read_tail(path: Path, limit: int = 600) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return " | ".join(line for line in text.strip().splitlines()[-6:] if line.strip())[-limit:]


def feature_checks(t: Target) -> dict:
    """Is auth really enforced (a request without the key is refused)? Does /metrics answer?"""
    call = CALLS[t.primary]
    out = {}
    try:
        status, _, _ = http_post(t.port, call.path, json.dumps(call.body).encode(), {})
        out["auth_enforced"] = "yes" if status in (401, 403) else f"no (HTTP {status} without a key)"
    except OSError as exc:
        out["auth_enforced"] = f"unknown ({exc})"
    out |= metrics_check(t.port)
    return out


def metrics_check(port: int) -> dict:
    try:
        status, body = http_get(port, "/metrics", timeout=5)
    except OSError as exc:
        return {"metrics_endpoint": f"unreachable ({exc})"}
    return {"metrics_endpoint": f"HTTP {status}", "metrics_bytes": len(body)}


def poll_exited(proc: subprocess.Popen) -> bool:
    return proc.poll() is not None
