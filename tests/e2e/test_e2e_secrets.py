"""The provider key configured on the ``openai`` routes (``SENTINEL``) reaches its upstream and
nothing else: no response body or header (the ``http`` fixture checks every response), and not the
server's stdout/stderr, checked here after successes and failures, and again by the ``gateway``
fixture after shutdown.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from e2e_support import SENTINEL

from gateway_server.testing import FakeOpenAI, Fault
from gateway_server.testing.process import GatewayProcess, GatewayStartError

pytestmark = pytest.mark.e2e

CHAT = {"messages": [{"role": "user", "content": f"please repeat {SENTINEL[:6]}"}]}


def test_key_reaches_the_upstream_and_nothing_else(
    http: httpx.Client, e2e_openai: FakeOpenAI, gateway: GatewayProcess
) -> None:
    path = "/gateway/leak-check/invocations"
    assert http.post(path, json=CHAT).status_code == 200
    # The check below means something only if the key was really in use.
    assert e2e_openai.last_request.headers["authorization"] == f"Bearer {SENTINEL}"

    body = {"error": {"message": f"Incorrect API key provided: {SENTINEL}", "code": "invalid_api_key"}}
    faults = [
        Fault.error(401, body),
        Fault.error(500, {"error": {"message": f"internal error for key {SENTINEL}"}}),
        Fault.not_json(f"<html>{SENTINEL}</html>"),
        Fault.disconnect(),
    ]
    for fault in faults:
        e2e_openai.inject(fault)
        response = http.post(path, json=CHAT)
        assert response.status_code >= 400, response.text
    assert http.post(path, json=CHAT).status_code == 200
    assert len(e2e_openai.requests) == 2 + len(faults)

    assert http.post("/gateway/fail-closed/invocations", json=CHAT).status_code == 502
    for read in (
        "/health",
        "/api/2.0/gateway/routes/",
        "/api/2.0/gateway/routes/leak-check",
        "/api/2.0/endpoints/",
        "/api/2.0/endpoints/leak-check",
        "/v1/models",
        "/openapi.json",
        "/docs",
        "/metrics",
    ):
        assert http.get(read).status_code < 500, read

    assert gateway.alive
    assert SENTINEL not in gateway.output, "the provider key appeared in the gateway's output"


def test_invalid_config_holding_the_key_does_not_print_it(tmp_path: Path) -> None:
    """``serve`` validates first; the problems are printed (file, route, field), the literal key never."""
    config = tmp_path / "bad.yaml"
    config.write_text(
        "routes:\n"
        "  - name: azure-chat\n"
        "    route_type: llm/v1/chat\n"
        "    model:\n"
        "      provider: openai\n"
        "      name: gpt-4o-mini\n"
        "      config:\n"
        f"        openai_api_key: {SENTINEL}\n"
        "        openai_api_type: azure\n"
        "        openai_api_bsae: https://example.invalid\n",
        encoding="utf-8",
    )
    process = GatewayProcess(config, log_dir=tmp_path, startup_timeout=30)
    with pytest.raises(GatewayStartError, match="exited with code"):
        process.start()
    assert process.returncode not in (None, 0)
    output = process.output
    assert "azure-chat" in output and "openai_api_bsae" in output, output
    assert SENTINEL not in output
