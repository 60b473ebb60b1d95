"""``gatewayctl top``: a live view of a running gateway, refreshed every second (Ctrl-C quits).

Per route: requests per second, p50 and p99 latency, error rate, tokens per second, requests in
flight and the circuit-breaker state; then the totals and the gateway's uptime. It reads
``GET /api/2.0/gateway/stats`` (the same counters as ``/metrics``, every worker added up) twice
and works on the difference, so every rate is over the last interval; p50/p99 come from the
latency histogram's buckets over that interval (since start when the interval had no request).
``--once`` prints one view after one interval; ``-o json`` prints it as the JSON envelope.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from gatewayctl.cli import output
from gatewayctl.cli.options import ApiKey, GatewayUri, Output, Timeout, make_client
from gatewayctl.cli.output import OutputFormat

__all__ = ["quantile", "top", "view"]


def quantile(counts: list[float], bounds: list[float], q: float) -> float | None:
    """The ``q`` quantile of bucket counts (not cumulative; the last is +Inf), interpolated
    within its bucket as Prometheus's ``histogram_quantile`` does. None without observations."""
    total = sum(counts)
    if total <= 0:
        return None
    rank = q * total
    seen = 0.0
    for index, count in enumerate(counts):
        if count > 0 and seen + count >= rank:
            if index >= len(bounds):
                return bounds[-1]
            lower = bounds[index - 1] if index else 0.0
            return lower + (bounds[index] - lower) * (rank - seen) / count
        seen += count
    return bounds[-1]


def _route_view(
    now: dict[str, Any], before: dict[str, Any] | None, seconds: float, bounds: list[float]
) -> dict[str, Any]:
    def delta(pick: Any) -> float:
        return float(pick(now) - (pick(before) if before is not None else 0))

    buckets = len(bounds) + 1
    requests = delta(lambda r: r["requests"])
    errors = delta(lambda r: r["errors"])
    tokens = delta(lambda r: r["tokens"]["prompt"] + r["tokens"]["completion"])
    counts = now["duration"][:buckets]
    if before is not None and requests > 0:
        counts = [a - b for a, b in zip(counts, before["duration"][:buckets], strict=True)]
    p50, p99 = quantile(counts, bounds, 0.5), quantile(counts, bounds, 0.99)
    return {
        "rps": round(requests / seconds, 3),
        "p50_ms": None if p50 is None else round(p50 * 1000, 3),
        "p99_ms": None if p99 is None else round(p99 * 1000, 3),
        "error_rate": round(errors / requests, 4) if requests else 0.0,
        "tokens_per_second": round(tokens / seconds, 3),
        "in_flight": now["in_flight"],
        "breaker": now["breaker"],
        "requests": now["requests"],
        "errors": now["errors"],
        "prompt_tokens": now["tokens"]["prompt"],
        "completion_tokens": now["tokens"]["completion"],
    }


def view(now: dict[str, Any], before: dict[str, Any] | None) -> dict[str, Any]:
    """What ``top`` shows, from two snapshots of the stats endpoint (``before`` may be None)."""
    seconds = (
        max(1e-3, now["time"] - before["time"]) if before is not None else max(1e-3, now["uptime_seconds"])
    )
    old = before["routes"] if before is not None else {}
    routes = {
        name: _route_view(route, old.get(name), seconds, now["buckets"])
        for name, route in sorted(now["routes"].items())
    }
    total_requests = sum(r["requests"] for r in routes.values())
    totals = {
        "rps": round(sum(r["rps"] for r in routes.values()), 3),
        "tokens_per_second": round(sum(r["tokens_per_second"] for r in routes.values()), 3),
        "in_flight": sum(r["in_flight"] for r in routes.values()),
        "requests": total_requests,
        "errors": sum(r["errors"] for r in routes.values()),
        "prompt_tokens": sum(r["prompt_tokens"] for r in routes.values()),
        "completion_tokens": sum(r["completion_tokens"] for r in routes.values()),
    }
    return {
        "uptime_seconds": round(now["uptime_seconds"], 1),
        "interval_seconds": round(seconds, 3),
        "routes": routes,
        "totals": totals,
    }


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _uptime(seconds: float) -> str:
    minutes, sec = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    return (f"{days}d " if days else "") + f"{hours:02d}:{minutes:02d}:{sec:02d}"


def render(data: dict[str, Any], uri: str) -> Any:
    """A rich renderable of :func:`view`'s result."""
    from rich.table import Table

    totals = data["totals"]
    table = Table(
        title=f"gatewayctl top - {uri} - up {_uptime(data['uptime_seconds'])}",
        caption=(
            f"total: {totals['rps']:.1f} req/s, {totals['tokens_per_second']:.1f} tok/s, "
            f"{totals['in_flight']} in flight, {totals['requests']} requests, {totals['errors']} errors "
            "(Ctrl-C quits)"
        ),
        title_justify="left",
        caption_justify="left",
    )
    for name, justify in (
        ("ROUTE", "left"),
        ("RPS", "right"),
        ("P50 ms", "right"),
        ("P99 ms", "right"),
        ("ERR %", "right"),
        ("TOK/s", "right"),
        ("INFLIGHT", "right"),
        ("BREAKER", "left"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    style = {"closed": "green", "half-open": "yellow", "open": "bold red"}
    for name, route in data["routes"].items():
        table.add_row(
            output.escape(name),
            f"{route['rps']:.1f}",
            _ms(route["p50_ms"]),
            _ms(route["p99_ms"]),
            f"{route['error_rate'] * 100:.1f}",
            f"{route['tokens_per_second']:.1f}",
            str(route["in_flight"]),
            f"[{style.get(route['breaker'], '')}]{route['breaker']}[/]",
        )
    return table


def top(
    gateway_uri: GatewayUri = None,
    api_key: ApiKey = None,
    once: Annotated[
        bool, typer.Option("--once", help="Print one view (after one interval) and exit.")
    ] = False,
    interval: Annotated[
        float, typer.Option("--interval", min=0.1, help="Seconds between two refreshes.")
    ] = 1.0,
    output_format: Output = OutputFormat.TEXT,
    timeout: Timeout = 10.0,
) -> None:
    """Live view of a running gateway: per route rps, p50/p99, errors, tokens/s, in flight, breaker.

    Examples:

    \b
      gatewayctl top --gateway-uri http://127.0.0.1:5000
      gatewayctl top --once -o json
      gatewayctl top --interval 5
    """
    with make_client(gateway_uri, api_key, timeout) as client:
        before = client.stats()
        time.sleep(interval)
        now = client.stats()
        if once:
            data = view(now, before)
            if output_format is OutputFormat.JSON:
                output.emit_json(data)
            else:
                output.print_renderable(render(data, client.gateway_uri))
            return
        from rich.live import Live

        try:
            with Live(
                render(view(now, before), client.gateway_uri), auto_refresh=False, screen=False
            ) as live:
                while True:
                    time.sleep(interval)
                    before, now = now, client.stats()
                    live.update(render(view(now, before), client.gateway_uri), refresh=True)
        except KeyboardInterrupt:
            return
