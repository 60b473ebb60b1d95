"""Aggregating repeats (median, min-max) and printing the benchmark's table."""

from __future__ import annotations

import statistics

# (key, label, unit); the order of the printed table
ROWS: list[tuple[str, str, str]] = [
    ("startup_s", "start-up (process start -> /health 200)", "s"),
    ("c1_direct_p50_ms", "c=1 direct upstream p50", "ms"),
    ("c1_gateway_p50_ms", "c=1 via gateway p50", "ms"),
    ("c1_added_p50_ms", "c=1 added latency p50 (median of round deltas)", "ms"),
    ("c1_added_p50_iqr_ms", "  IQR of the round deltas", "ms"),
    ("c1_added_p99_ms", "c=1 added latency p99 (gateway p99 - direct p99)", "ms"),
    ("c1_self_reported_header", "c=1 gateway's self-reported overhead header", ""),
    ("c1_self_reported_overhead_median", "  its median value (cross-check with the added p50)", "raw"),
    ("tput_rps", "c=64 throughput, 1 worker", "rps"),
    ("tput_p50_ms", "c=64 latency p50", "ms"),
    ("tput_p99_ms", "c=64 latency p99", "ms"),
    ("tput_errors", "c=64 errors", "count"),
    ("gateway_cpu_us_per_request", "gateway CPU per request", "us"),
    ("gateway_cpu_share", "gateway CPU use during c=64 (1.0 = one core)", "cores"),
    ("upstream_cpu_share_under_gateway_load", "fake upstream CPU use during c=64", "cores"),
    ("upstream_calls_per_request", "upstream calls per gateway request", "x"),
    ("loadgen_cpu_share", "load generator CPU use during c=64", "cores"),
    ("other_cpu_share_during_c64", "other processes' CPU use during c=64 (should be ~0)", "cores"),
    ("steal_share_during_c64", "CPU stolen by the hypervisor during c=64", "cores"),
    ("loadgen_cpu_us_per_request", "load generator CPU per request", "us"),
    ("stream_direct_first_event_ms", "stream: direct time to first event", "ms"),
    ("stream_added_first_event_ms", "stream: added time to first event", "ms"),
    ("stream_direct_total_ms", "stream: direct total time", "ms"),
    ("stream_added_total_ms", "stream: added total time", "ms"),
    ("stream_events_gateway", "stream: events per stream via gateway", "n"),
    ("stream_unpaced_direct_total_ms", "unpaced stream: direct total time", "ms"),
    ("stream_unpaced_added_first_event_ms", "unpaced stream: added time to first event", "ms"),
    ("stream_unpaced_added_total_ms", "unpaced stream: added total time", "ms"),
    ("stream_unpaced_added_per_event_us", "unpaced stream: added time per event after the first", "us"),
    ("rss_idle_mib", "RSS idle (after start-up)", "MiB"),
    ("rss_after_mib", "RSS after the load", "MiB"),
    ("auth_enforced", "auth enforced (request without key refused)", ""),
    ("metrics_endpoint", "GET /metrics", ""),
    ("metrics_bytes", "GET /metrics size after the load", "bytes"),
    ("noisy_attempts_discarded", "attempts discarded: other jobs used the cores", "count"),
]
DIRECT_ROWS: list[tuple[str, str, str]] = [
    ("background_busy_cores", "other processes' CPU use before the repeat (1 s idle sample)", "cores"),
    ("rps", "upstream alone, c=64, load generator on the other core", "rps"),
    ("upstream_cpu_us_per_request", "upstream CPU per request", "us"),
    ("upstream_capacity_rps", "upstream capacity on one core (1 / CPU per request)", "rps"),
    ("loadgen_cpu_share", "load generator CPU use there", "cores"),
    ("same_core_rps", "direct, c=64, load generator sharing the upstream's core", "rps"),
    ("c1_same_core_p50_ms", "direct, c=1 p50, load generator on the upstream's core", "ms"),
    ("c1_cross_core_p50_ms", "direct, c=1 p50, load generator on the other core", "ms"),
    ("cross_core_hop_ms", "cost of one cross-core hop (half the difference)", "ms"),
]


def aggregate(repeats: list[dict]) -> dict:
    """Per key: median, min, max and all values for numbers; the distinct values for anything else."""
    keys: list[str] = []
    for rep in repeats:
        keys += [k for k in rep if k not in keys]
    out: dict = {}
    for key in keys:
        values = [rep.get(key) for rep in repeats]
        numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
        if numbers and len(numbers) == len([v for v in values if v is not None]):
            out[key] = {
                "median": round(statistics.median(numbers), 4),
                "min": min(numbers),
                "max": max(numbers),
                "values": numbers,
            }
        else:
            distinct = []
            for v in values:
                if v is not None and v not in distinct:
                    distinct.append(v)
            out[key] = {"values": distinct}
    return out


def _num(v: float) -> str:
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def cell(agg: dict | None) -> str:
    if not agg:
        return "-"
    if "median" in agg:
        text = _num(agg["median"])
        if agg["min"] != agg["max"]:
            text += f" ({_num(agg['min'])}-{_num(agg['max'])})"
        return text
    return "; ".join(str(v) for v in agg["values"])[:60] or "-"


def table(
    columns: dict[str, dict], rows: list[tuple[str, str, str]], extra_ratio: tuple[str, str] | None
) -> str:
    """A plain-text table: one row per figure, one column per scenario (median and min-max over repeats)."""
    names = list(columns)
    header = ["figure", "unit", *names]
    if extra_ratio:
        header.append(f"{extra_ratio[1]} / {extra_ratio[0]}")
    lines = [header]
    for key, label, unit in rows:
        cells = [cell(columns[n].get(key)) for n in names]
        if all(c == "-" for c in cells):
            continue
        row = [label, unit, *cells]
        if extra_ratio:
            row.append(_ratio(columns[extra_ratio[0]].get(key), columns[extra_ratio[1]].get(key)))
        lines.append(row)
    widths = [max(len(r[i]) for r in lines) for i in range(len(header))]
    widths[0] = min(widths[0], 56)
    out = []
    for i, r in enumerate(lines):
        out.append("  ".join(c[: widths[j]].ljust(widths[j]) for j, c in enumerate(r)).rstrip())
        if i == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def _ratio(a: dict | None, b: dict | None) -> str:
    if not a or not b or "median" not in a or "median" not in b or not a["median"]:
        return ""
    return f"{b['median'] / a['median']:.2f}x"


def markdown(columns: dict[str, dict], rows: list[tuple[str, str, str]]) -> str:
    names = list(columns)
    lines = ["| figure | unit | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for key, label, unit in rows:
        cells = [cell(columns[n].get(key)) for n in names]
        if all(c == "-" for c in cells):
            continue
        lines.append(f"| {label.strip()} | {unit} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
