"""``GET /api/2.0/gateway/stats``: the JSON view of the metrics that ``gatewayctl top`` draws.

It is computed from the same collected series as ``/metrics`` (so it adds up every worker under
``--workers N`` too), grouped per route: counts since start, the latency histogram's buckets, token
totals, requests in flight and the worst breaker state. Rates (rps, tokens/s, p50/p99 over the last
second) are the client's job: it takes two snapshots and subtracts. Needs the ``query`` scope when
the gateway has keys (route names describe the deployment, as the route listing does).
"""

from __future__ import annotations

import time
from typing import Any

from gateway_server.metrics import (
    BUCKETS,
    CIRCUIT,
    DURATION,
    IN_FLIGHT,
    REQUESTS,
    TOKENS,
    UPSTREAM_ERRORS,
    Metrics,
)

__all__ = ["STATS_VERSION", "snapshot"]

STATS_VERSION = 1
_SEVERITY = {"closed": 0, "half-open": 1, "open": 2}


def _route(routes: dict[str, dict[str, Any]], name: str) -> dict[str, Any]:
    entry = routes.get(name)
    if entry is None:
        entry = routes[name] = {
            "requests": 0,
            "errors": 0,
            "status": {},
            "duration": [0.0] * (len(BUCKETS) + 2),
            "tokens": {"prompt": 0, "completion": 0},
            "upstream_errors": 0,
            "in_flight": 0,
            "breaker": "closed",
        }
    return entry


def snapshot(metrics: Metrics, route_names: list[str]) -> dict[str, Any]:
    """Per configured route (every one, even before its first request), plus the server's start."""
    routes: dict[str, dict[str, Any]] = {}
    for name in route_names:
        _route(routes, name)
    for (family, labels), values in metrics.collect(route_names).items():
        name = labels[0]
        if not name:
            continue
        entry = _route(routes, name)
        if family == REQUESTS:
            count = int(values[0])
            entry["requests"] += count
            entry["status"][labels[1]] = entry["status"].get(labels[1], 0) + count
            if labels[1] >= "400":
                entry["errors"] += count
        elif family == DURATION:
            entry["duration"] = values
        elif family == TOKENS:
            entry["tokens"][labels[3]] += int(values[0])
        elif family == UPSTREAM_ERRORS:
            entry["upstream_errors"] += int(values[0])
        elif family == IN_FLIGHT:
            entry["in_flight"] += int(values[0])
        elif family == CIRCUIT and values[0] > 0 and _SEVERITY[labels[3]] > _SEVERITY[entry["breaker"]]:
            entry["breaker"] = labels[3]
    now = time.time()
    return {
        "version": STATS_VERSION,
        "time": now,
        "started": metrics.started,
        "uptime_seconds": max(0.0, now - metrics.started),
        "buckets": list(BUCKETS),
        "routes": routes,
    }
