"""Metrics in one process: the families, labels only from the config, deleted routes forgotten, and
the file-backed store that ``--workers N`` uses, added up across stores."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from gateway_server.app import create_app
from gateway_server.config import load_config
from gateway_server.metrics import GAUGES, Metrics
from gateway_server.metrics_store import FileStore, read_dir
from gateway_server.testing import serve_in_thread

ADMIN_KEY = "gk-admin-metrics-5151"
CONFIG = """\
routes:
  - name: chat
    route_type: llm/v1/chat
    model: {provider: fake, name: fake-chat, price: {input: 1000000, output: 2000000}}
auth:
  keys:
    - {name: ops, key: $GW_METRICS_ADMIN_KEY, scopes: [query, admin]}
"""
AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}
CHAT = {"messages": [{"role": "user", "content": "Hello there"}]}


@pytest.fixture
def gateway(tmp_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch) -> Iterator[httpx.Client]:
    monkeypatch.setenv("GW_METRICS_ADMIN_KEY", ADMIN_KEY)
    app = create_app(load_config(tmp_config(CONFIG)))
    with (
        serve_in_thread(app) as server,
        httpx.Client(base_url=server.url, timeout=10, headers=AUTH) as client,
    ):
        yield client


def test_deleted_routes_leave_no_series_after_200_cycles(gateway: httpx.Client) -> None:
    """Issue 13's stale metrics: +8,600 lines after 200 create/delete cycles before the fix."""
    assert gateway.post("/gateway/chat/invocations", json=CHAT).status_code == 200
    before = gateway.get("/metrics").text.count("\n")
    for index in range(200):
        name = f"cycle-{index}"
        route = {
            "name": name,
            "route_type": "llm/v1/chat",
            "model": {"provider": "fake", "name": "fake-chat"},
        }
        assert gateway.post("/api/2.0/gateway/routes/", json=route).status_code == 200
        assert gateway.post(f"/gateway/{name}/invocations", json=CHAT).status_code == 200
        assert gateway.delete(f"/api/2.0/gateway/routes/{name}").status_code == 200
    text = gateway.get("/metrics").text
    assert "cycle-" not in text
    assert text.count("\n") == before


def test_families_and_labels_come_from_the_config(gateway: httpx.Client) -> None:
    gateway.post("/gateway/chat/invocations", json=CHAT)
    gateway.post("/v1/chat/completions", json={"model": "chat", "stream": True, **CHAT})
    gateway.post("/gateway/made-up/invocations", json=CHAT)
    gateway.post("/v1/chat/completions", json={"model": "made-up-too", **CHAT})
    text = gateway.get("/metrics").text
    assert "made-up" not in text
    for family in (
        "gateway_requests_total",
        "gateway_request_duration_seconds",
        "gateway_overhead_seconds",
        "gateway_time_to_first_token_seconds",
        "gateway_tokens_total",
        "gateway_cost_total",
        "gateway_upstream_errors_total",
        "gateway_retries_total",
        "gateway_fallbacks_total",
        "gateway_refused_total",
        "gateway_circuit_state",
        "gateway_in_flight_requests",
    ):
        assert f"# TYPE {family} " in text, family
    assert 'gateway_requests_total{route="chat",status="200",key="ops"} 2' in text
    assert 'gateway_requests_total{status="404",key="ops"} 2' in text
    assert 'gateway_time_to_first_token_seconds_count{route="chat"} 1' in text
    assert (
        'gateway_tokens_total{route="chat",provider="fake",model="fake-chat",kind="prompt",key="ops"}' in text
    )
    assert 'gateway_circuit_state{route="chat",provider="fake",model="fake-chat",state="closed"} 1' in text
    assert 'gateway_in_flight_requests{route="chat"} 0' in text
    # The price is $1 a prompt token and $2 a completion token: the cost adds up the tokens counted.
    labels = 'route="chat",provider="fake",model="fake-chat"'
    prompt, completion = (
        _value(text, f'gateway_tokens_total{{{labels},kind="{kind}",key="ops"}}') for kind in ("prompt", "completion")
    )
    assert prompt > 0 and completion > 0
    assert _value(text, f'gateway_cost_total{{{labels},key="ops"}}') == pytest.approx(prompt + 2 * completion)


def _value(text: str, series: str) -> float:
    """The value of one series in a Prometheus text scrape."""
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{series} is not in the scrape")


def test_file_stores_of_several_workers_add_up(tmp_path: Path) -> None:
    first = Metrics(FileStore(str(tmp_path), gauges=GAUGES, pid=1))
    second = Metrics(FileStore(str(tmp_path), gauges=GAUGES, pid=2))
    for metrics, count in ((first, 3), (second, 4)):
        for _ in range(count):
            metrics.request("chat", 200, "", 0.002, 0.0001)
    second.tokens("chat", "openai", "gpt", "", 10, 5)
    for index in range(5000):  # past the initial size: the file grows, the earlier slots stay
        second.add("gateway_retries_total", (f"r{index}", "openai"))
    totals = read_dir(str(tmp_path))
    assert totals[("gateway_requests_total", ("chat", "200", ""))] == [7.0]
    assert sum(totals[("gateway_request_duration_seconds", ("chat",))][:-1]) == 7
    assert totals[("gateway_tokens_total", ("chat", "openai", "gpt", "prompt", ""))] == [10.0]
    assert first.collect() == second.collect()  # any worker's scrape sees the same totals
    second.retain(["chat"])
    assert ("gateway_retries_total", ("r1", "openai")) not in read_dir(str(tmp_path))
    second.add("gateway_retries_total", ("again", "openai"))  # a freed slot is reused, cleanly
    assert read_dir(str(tmp_path))[("gateway_retries_total", ("again", "openai"))] == [1.0]
    first.close()
    second.close()


def test_gauges_of_a_dead_worker_are_not_counted(tmp_path: Path) -> None:
    dead = Metrics(FileStore(str(tmp_path), gauges=GAUGES, pid=2**22 + 12345))  # no such process
    dead.add("gateway_in_flight_requests", ("chat",), 3)
    dead.request("chat", 200, "", 0.1, 0.01)
    totals = read_dir(str(tmp_path), GAUGES)
    assert ("gateway_in_flight_requests", ("chat",)) not in totals
    assert totals[("gateway_requests_total", ("chat", "200", ""))] == [1.0]  # counters never go back
    dead.close()


def test_docs_list_every_family_access_field_and_dashboard_query() -> None:
    """docs/observability.md names every family and access-line field; the Grafana dashboard only
    queries families that exist."""
    import json
    import re

    from gateway_server.logs import ACCESS_FIELDS
    from gateway_server.metrics import FAMILIES

    docs = Path(__file__).resolve().parents[2] / "docs"
    text = (docs / "observability.md").read_text(encoding="utf-8")
    for family in FAMILIES:
        row = next((line for line in text.splitlines() if line.startswith(f"| `{family.name}` |")), None)
        assert row is not None, f"docs/observability.md has no row for {family.name}"
        for label in family.labels:
            assert f"`{label}`" in row, (family.name, label)
    for field in ACCESS_FIELDS:
        assert re.search(rf"^\| (`\w+`, )*`{field}`", text, re.MULTILINE), (
            f"access field {field} undocumented"
        )
    dashboard = json.loads((docs / "grafana-dashboard.json").read_text(encoding="utf-8"))
    names = {family.name for family in FAMILIES} | {"gateway_start_time_seconds"}
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    used = {
        re.sub(r"_(bucket|sum|count)$", "", name)
        for expr in exprs
        for name in re.findall(r"gateway_\w+", expr)
    }
    assert used <= names, used - names
    assert {family.name for family in FAMILIES} - used <= set(), "a family no panel shows"
