"""The gateway's metrics: the families, the calls the hot path makes, and two views of the same
numbers: the Prometheus text format (``GET /metrics``) and a JSON snapshot (``GET /gateway/stats``,
what ``gatewayctl top`` draws).

Values live in a :mod:`gateway_server.metrics_store` store: in memory for one process, in one
memory-mapped file per worker under ``--workers N``, added up at every scrape. Every label value
comes from the config (route, provider, model, gateway key name) or from a closed set (status,
token kind, error reason, breaker state): a URL naming an unknown route never creates a series,
and the series of a route that is deleted disappear (:meth:`Metrics.retain`). Each family with its
labels is listed in docs/observability.md.
"""

from __future__ import annotations

import os
import time
from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from gateway_server.metrics_store import METRICS_DIR_ENV, FileStore, Series, Store

__all__ = ["BUCKETS", "FAMILIES", "Family", "Metrics", "RouteSlots"]

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
_WIDTH = len(BUCKETS) + 2  # one count per bucket (the last one is +Inf), then the sum


@dataclass(frozen=True, slots=True)
class Family:
    name: str
    kind: str  # counter, gauge, histogram
    labels: tuple[str, ...]
    help: str


REQUESTS = "gateway_requests_total"
DURATION = "gateway_request_duration_seconds"
OVERHEAD = "gateway_overhead_seconds"
TTFT = "gateway_time_to_first_token_seconds"
TOKENS = "gateway_tokens_total"
COST = "gateway_cost_total"
UPSTREAM_ERRORS = "gateway_upstream_errors_total"
RETRIES = "gateway_retries_total"
FALLBACKS = "gateway_fallbacks_total"
REFUSED = "gateway_refused_total"
CIRCUIT = "gateway_circuit_state"
IN_FLIGHT = "gateway_in_flight_requests"

FAMILIES = (
    Family(
        REQUESTS,
        "counter",
        ("route", "status", "key"),
        "Invocations answered, by route, HTTP status and gateway key.",
    ),
    Family(
        DURATION,
        "histogram",
        ("route",),
        "Time in the gateway, upstream included (streams: until the last byte).",
    ),
    Family(
        OVERHEAD,
        "histogram",
        ("route",),
        "The gateway's own time: total minus upstream (streams: up to the first chunk).",
    ),
    Family(TTFT, "histogram", ("route",), "Streams: time from the request to the first chunk sent."),
    Family(
        TOKENS,
        "counter",
        ("route", "provider", "model", "kind", "key"),
        "Tokens the upstream reported, by kind (prompt, completion).",
    ),
    Family(
        COST,
        "counter",
        ("route", "provider", "model", "key"),
        "Cost of the answers in US dollars, from the configured prices.",
    ),
    Family(
        UPSTREAM_ERRORS,
        "counter",
        ("route", "provider", "reason"),
        "Failed upstream attempts, by reason (timeout, connect, 5xx, 429, 4xx, protocol).",
    ),
    Family(RETRIES, "counter", ("route", "provider"), "Attempts that retried the same model."),
    Family(
        FALLBACKS,
        "counter",
        ("route", "provider", "model"),
        "Answers served by a fallback model (not the route's first choice).",
    ),
    Family(
        REFUSED,
        "counter",
        ("route", "reason"),
        "Requests refused before any upstream call (rate_limit, circuit_open, ...).",
    ),
    Family(
        CIRCUIT,
        "gauge",
        ("route", "provider", "model", "state"),
        "Worker processes whose circuit breaker for this model is in this state.",
    ),
    Family(IN_FLIGHT, "gauge", ("route",), "Invocations being served now."),
)
_BY_NAME = {family.name: family for family in FAMILIES}
GAUGES = frozenset(family.name for family in FAMILIES if family.kind == "gauge")


class RouteSlots:
    """A route's slots, looked up once (the hot path then indexes the array directly)."""

    __slots__ = ("breakers", "duration", "in_flight", "overhead", "requests", "route", "tokens", "ttft")

    def __init__(self, store: Store, route: str) -> None:
        self.route = route
        self.in_flight = store.slot((IN_FLIGHT, (route,)))
        self.duration = store.slot((DURATION, (route,)), _WIDTH)
        self.overhead = store.slot((OVERHEAD, (route,)), _WIDTH)
        self.ttft = -1  # allocated by the first stream: a route that never streams has no series
        self.requests: dict[tuple[int, str], int] = {}  # (status, key) -> slot
        # (id(target), key) -> the slots of its prompt and completion tokens, and its cost (-1: no price)
        self.tokens: dict[tuple[int, str], tuple[int, int, int]] = {}
        self.breakers: dict[int, str] = {}  # id(target) -> the breaker state last reported


class Metrics:
    """What the hot path calls; one per process (``GatewayState.metrics``)."""

    def __init__(self, store: Store | None = None) -> None:
        self.store = store if store is not None else _default_store()
        self.started = float(os.environ.get(STARTED_ENV) or time.time())
        self._breaker_states: dict[tuple[str, str, str], str] = {}
        self._routes: dict[str, RouteSlots] = {}

    # -- the invocation path: a route's slots once, then array adds ------------------------------

    def begin(self, route: str) -> RouteSlots:
        """A request resolved ``route``: it is in flight until :meth:`end`."""
        slots = self._routes.get(route)
        if slots is None:
            slots = self._routes[route] = RouteSlots(self.store, route)
        self.store.values[slots.in_flight] += 1
        return slots

    def end(
        self,
        slots: RouteSlots,
        status: int,
        key: str,
        seconds: float,
        overhead: float,
        served: Any = None,
        usage: Any = None,
    ) -> None:
        """A request on ``slots``' route answered ``status``; with ``usage``, the tokens of the
        answer ``served`` (reliability.Target) gave, labelled by its provider and model."""
        store = self.store
        slot = slots.requests.get((status, key))
        if slot is None:
            slot = slots.requests[(status, key)] = store.slot((REQUESTS, (slots.route, _status(status), key)))
        values = store.values
        values[slots.in_flight] -= 1
        values[slot] += 1
        base = slots.duration
        values[base + bisect_left(BUCKETS, seconds)] += 1
        values[base + _WIDTH - 1] += seconds
        base = slots.overhead
        values[base + bisect_left(BUCKETS, overhead)] += 1
        values[base + _WIDTH - 1] += overhead
        if usage is not None and served is not None:
            used = slots.tokens.get((id(served), key))
            if used is None:
                adapter = served.adapter
                labels = (slots.route, adapter.name, adapter.model_name or "")
                used = slots.tokens[(id(served), key)] = (
                    store.slot((TOKENS, (*labels, "prompt", key))),
                    store.slot((TOKENS, (*labels, "completion", key))),
                    store.slot((COST, (*labels, key))) if served.price is not None else -1,
                )
            prompt, completion = usage.prompt, usage.completion
            values[used[0]] += prompt
            values[used[1]] += completion
            if used[2] >= 0:  # each answer at the price of the model that served it (cost_usd, inlined)
                price = served.price
                values[used[2]] += (prompt * price.input + completion * price.output) / 1_000_000

    def first_token(self, slots: RouteSlots, seconds: float) -> None:
        if slots.ttft < 0:
            slots.ttft = self.store.slot((TTFT, (slots.route,)), _WIDTH)
        values = self.store.values
        values[slots.ttft + bisect_left(BUCKETS, seconds)] += 1
        values[slots.ttft + _WIDTH - 1] += seconds

    # -- the hot path: one slot lookup and one add per call ----------------------------------------

    def add(self, family: str, labels: tuple[str, ...], amount: float = 1.0) -> None:
        store = self.store
        slot = store.slots.get((family, labels))
        if slot is None:
            slot = store.slot((family, labels))
        store.values[slot] += amount

    def observe(self, family: str, route: str, seconds: float) -> None:
        store = self.store
        series = (family, (route,))
        slot = store.slots.get(series)
        if slot is None:
            slot = store.slot(series, _WIDTH)
        values = store.values
        values[slot + bisect_left(BUCKETS, seconds)] += 1
        values[slot + _WIDTH - 1] += seconds

    def request(self, route: str, status: int, key: str, seconds: float, overhead: float) -> None:
        """One invocation answered (``route`` is "" when none was resolved: not counted by route)."""
        self.add(REQUESTS, (route, _status(status), key))
        if route:
            self.observe(DURATION, route, seconds)
            self.observe(OVERHEAD, route, overhead)

    def tokens(self, route: str, provider: str, model: str, key: str, prompt: int, completion: int) -> None:
        if prompt:
            self.add(TOKENS, (route, provider, model, "prompt", key), prompt)
        if completion:
            self.add(TOKENS, (route, provider, model, "completion", key), completion)

    def breaker(self, route: str, provider: str, model: str, state: str) -> None:
        """This worker's breaker for (route's) model is in ``state`` now (one worker counts once)."""
        ident = (route, provider, model)
        before = self._breaker_states.get(ident)
        if before == state:
            return
        if before is not None:
            self.add(CIRCUIT, (*ident, before), -1)
        self.add(CIRCUIT, (*ident, state), 1)
        self._breaker_states[ident] = state

    # -- route changes --------------------------------------------------------------------------

    def retain(self, routes: Iterable[str]) -> None:
        """Forget the series of every route not in ``routes`` (deleted, renamed by a reload)."""
        names = set(routes)
        self._routes = {}  # slots of dropped series are reused: look every route up again
        self.store.drop(lambda series: not series[1][0] or series[1][0] in names)
        self._breaker_states = {k: v for k, v in self._breaker_states.items() if k[0] in names}

    # -- reading --------------------------------------------------------------------------------

    def collect(self, routes: Iterable[str] | None = None) -> dict[Series, list[float]]:
        """The whole server's series; with ``routes``, only theirs (and the route-less ones)."""
        series = self.store.collect()
        if routes is None:
            return series
        names = set(routes)
        return {key: value for key, value in series.items() if not key[1][0] or key[1][0] in names}

    def render(self, routes: Iterable[str] | None = None) -> str:
        """The Prometheus text exposition format (version 0.0.4)."""
        grouped: dict[str, list[tuple[tuple[str, ...], list[float]]]] = {}
        for (name, labels), values in self.collect(routes).items():
            grouped.setdefault(name, []).append((labels, values))
        lines: list[str] = []
        for family in FAMILIES:
            lines.append(f"# HELP {family.name} {family.help}")
            lines.append(f"# TYPE {family.name} {family.kind}")
            for labels, values in sorted(grouped.get(family.name, ())):
                text = ",".join(  # an empty value is an absent label in Prometheus: left out
                    f'{n}="{_escape(v)}"' for n, v in zip(family.labels, labels, strict=True) if v
                )
                if family.kind == "histogram":
                    _histogram_lines(lines, family.name, text, values)
                else:
                    lines.append(
                        f"{family.name}{{{text}}} {_number(values[0])}"
                        if text
                        else f"{family.name} {_number(values[0])}"
                    )
        lines.append("# HELP gateway_start_time_seconds When the server started (Unix time).")
        lines.append("# TYPE gateway_start_time_seconds gauge")
        lines.append(f"gateway_start_time_seconds {self.started!r}")
        return "\n".join(lines) + "\n"

    def close(self) -> None:
        self.store.close()


STARTED_ENV = "GATEWAYCTL_STARTED_AT"  # the supervisor's start, so every worker reports one uptime


def _default_store() -> Store:
    directory = os.environ.get(METRICS_DIR_ENV)
    return FileStore(directory, gauges=GAUGES) if directory else Store()


def _status(status: int) -> str:
    return _STATUS[status] if status < len(_STATUS) else str(status)


_STATUS = [str(code) for code in range(600)]


def _histogram_lines(lines: list[str], name: str, labels: str, values: list[float]) -> None:
    cumulative = 0.0
    for bound, count in zip((*BUCKETS, "+Inf"), values, strict=False):
        cumulative += count
        le = bound if isinstance(bound, str) else repr(bound)
        lines.append(f'{name}_bucket{{{labels},le="{le}"}} {_number(cumulative)}')
    lines.append(f"{name}_sum{{{labels}}} {values[-1]!r}")
    lines.append(f"{name}_count{{{labels}}} {_number(cumulative)}")


def _number(value: float) -> str:
    return str(int(value)) if value == int(value) else repr(value)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
