"""Prometheus metrics, kept in-process and rendered in the text exposition format at ``/metrics``.

No client library: the hot path only increments dict entries and one bisect per histogram
(about two microseconds), and rendering happens when Prometheus scrapes. With ``--workers N``
each worker keeps its own numbers (scrape each, or run one worker per container).

- ``gateway_requests_total{route, status}``: invocations answered
- ``gateway_request_duration_seconds{route}``: whole time in the gateway, upstream included
- ``gateway_overhead_seconds{route}``: the gateway's own share (total minus upstream), the figure
  ``X-Gateway-Overhead-Ms`` reports per response
"""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict

__all__ = ["BUCKETS", "Metrics"]

BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)


class _Histogram:
    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(BUCKETS, value)] += 1
        self.total += value


class Metrics:
    def __init__(self) -> None:
        self.requests: defaultdict[tuple[str, int], int] = defaultdict(int)
        self.duration: defaultdict[str, _Histogram] = defaultdict(_Histogram)
        self.overhead: defaultdict[str, _Histogram] = defaultdict(_Histogram)

    def observe(self, route: str, status: int, seconds: float, overhead_seconds: float) -> None:
        self.requests[(route, status)] += 1
        self.duration[route].observe(seconds)
        self.overhead[route].observe(overhead_seconds)

    def render(self) -> str:
        lines = [
            "# HELP gateway_requests_total Invocations answered, by route and HTTP status.",
            "# TYPE gateway_requests_total counter",
        ]
        for (route, status), count in sorted(self.requests.items()):
            lines.append(f'gateway_requests_total{{route="{_label(route)}",status="{status}"}} {count}')
        for name, help_text, table in (
            ("gateway_request_duration_seconds", "Time in the gateway, upstream included.", self.duration),
            ("gateway_overhead_seconds", "The gateway's own time: total minus upstream.", self.overhead),
        ):
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
            for route, histogram in sorted(table.items()):
                label = f'route="{_label(route)}"'
                cumulative = 0
                for bound, count in zip((*BUCKETS, float("inf")), histogram.counts, strict=True):
                    cumulative += count
                    le = "+Inf" if bound == float("inf") else repr(bound)
                    lines.append(f'{name}_bucket{{{label},le="{le}"}} {cumulative}')
                lines.append(f"{name}_sum{{{label}}} {histogram.total!r}")
                lines.append(f"{name}_count{{{label}}} {cumulative}")
        return "\n".join(lines) + "\n"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
