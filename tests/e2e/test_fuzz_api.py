"""Fuzzing the HTTP API from its own OpenAPI document (schemathesis) against a real ``gatewayctl serve``.

Every operation of ``/openapi.json`` gets generated requests, valid and invalid ones (bodies,
path parameters, query strings, headers), positive and negative. The gateway must answer each
without a 5xx, and every 4xx must be the documented error envelope ``{"error": {"message",
"type", "code"}, "detail"}``. The served routes are all in-process (the ``fake`` provider) and
route creation needs an admin key nobody has, so no generated request can reach the network.

The budget is fixed by examples per operation (``EXAMPLES``), seeded (``SEED``) so that a failure
is reproducible and the run stays well under two minutes on a loaded 2-core machine.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, seed, settings

from gateway_server.testing.process import GatewayProcess

schemathesis = pytest.importorskip("schemathesis")

EXAMPLES = 30  # per operation and generation mode
SEED = 20261202
BUDGET_SECONDS = 120
ENVELOPE_KEYS = {"error", "detail"}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    workdir = tmp_path_factory.mktemp("fuzz")
    config = {
        "auth": {"keys": [{"name": "fuzz", "key": "fuzz-query-key-0123456789", "scopes": ["query"]}]},
        "routes": [
            {
                "name": "chat",
                "route_type": "llm/v1/chat",
                "model": {"provider": "fake", "name": "fake-model"},
            },
            {
                "name": "completions",
                "route_type": "llm/v1/completions",
                "model": {"provider": "fake", "name": "fake-model"},
                "limit": {"calls": 100000, "renewal_period": "minute"},
            },
            {
                "name": "embeddings",
                "route_type": "llm/v1/embeddings",
                "model": {"provider": "fake", "name": "fake-model"},
            },
        ],
    }
    path = Path(workdir) / "gateway.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    with GatewayProcess(path, log_dir=workdir, name="fuzz") as process:
        yield process


@pytest.fixture(scope="module")
def operations(gateway: GatewayProcess) -> list[Any]:
    document = httpx.get(f"{gateway.url}/openapi.json", timeout=60, trust_env=False).json()
    schema = schemathesis.openapi.from_dict(document)
    return [result.ok() for result in schema.get_all_operations()]


def _check(response: Any, label: str) -> None:
    assert response.status_code < 500, f"{label}: {response.status_code} {response.text[:500]}"
    if response.status_code >= 400:
        try:
            payload = response.json()
        except ValueError:
            raise AssertionError(
                f"{label}: {response.status_code} is not JSON: {response.text[:300]!r}"
            ) from None
        assert isinstance(payload, dict), f"{label}: {payload!r}"
        if "/v1/messages" in label:  # the Anthropic protocol's own error shape (docs/agents.md)
            assert payload.get("type") == "error" and {"type", "message"} <= set(payload["error"]), label
            return
        if "/v1/responses" in label:  # the OpenAI Responses protocol's error shape
            assert {"message", "type"} <= set(payload["error"]), f"{label}: {payload!r}"
            return
        assert set(payload) == ENVELOPE_KEYS, f"{label}: {payload!r}"
        error = payload["error"]
        assert {"message", "type", "code"} <= set(error) and error["code"] == response.status_code, label


def _fuzzer(operation: Any, http: httpx.Client, base_url: str, seen: dict[str, int]) -> Any:
    """One hypothesis test for ``operation``: every generated case sent, every answer checked.
    Cases alternate between no key (401 everywhere a key is needed) and a ``query`` key."""
    label = f"{operation.method.upper()} {operation.path}"
    keys = [None, "fuzz-query-key-0123456789"]

    @seed(SEED)
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure prints its case
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy())
    def fuzz(case: Any) -> None:
        count = seen[label] = seen.get(label, 0) + 1
        kwargs = case.as_transport_kwargs(base_url=base_url)
        headers = {k: v for k, v in (kwargs.get("headers") or {}).items() if isinstance(v, str)}
        if keys[count % 2]:
            headers.setdefault("Authorization", f"Bearer {keys[count % 2]}")
        data = kwargs.get("data")
        request = http.build_request(
            kwargs["method"],
            kwargs["url"],
            params=kwargs.get("params"),
            headers=headers,
            json=kwargs.get("json"),
            content=data if isinstance(data, (bytes, str)) else None,
        )
        try:
            response = http.send(request)
        except httpx.LocalProtocolError:  # a header value no HTTP client can send: not a request
            return
        _check(response, f"{label} with {case.body!r:.300}")

    return fuzz


def test_every_operation_survives_fuzzing(gateway: GatewayProcess, operations: list[Any]) -> None:
    assert len(operations) >= 10, "the OpenAPI document lost its operations"
    seen: dict[str, int] = {}
    started = time.monotonic()
    with httpx.Client(base_url=gateway.url, timeout=30, trust_env=False) as http:
        for operation in operations:
            _fuzzer(operation, http, gateway.url, seen)()
            spent = time.monotonic() - started
            assert spent < BUDGET_SECONDS, f"fuzzing went past {BUDGET_SECONDS} s at {operation.path}"
    assert gateway.alive
    assert "Traceback" not in gateway.output, gateway.output[-3000:]
    assert sum(seen.values()) >= len(operations) * 5, seen
