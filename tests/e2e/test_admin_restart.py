"""A route created through the API of a real `python -m gatewayctl serve` is still there after a restart."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from gateway_server.testing import wait_until
from gatewayctl import GatewayClient

pytestmark = pytest.mark.e2e

ADMIN_KEY = "gk-admin-SENTINEL-e2e-5555"

CONFIG = """\
# e2e: this comment must survive
routes:
  - name: chat
    route_type: llm/v1/chat
    model: {provider: fake, name: fake-chat}
auth:
  keys:
    - {name: ops, key: $GW_E2E_ADMIN_KEY, scopes: [query, admin]}
"""


@contextmanager
def _serve(config: Path, port: int, log: Path) -> Iterator[str]:
    env = {**os.environ, "GW_E2E_ADMIN_KEY": ADMIN_KEY}
    url = f"http://127.0.0.1:{port}"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "gatewayctl", "serve", str(config), "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:

        def healthy() -> bool:
            assert process.poll() is None, log.read_text()
            try:
                return httpx.get(f"{url}/health", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(healthy, 30, message="gateway did not become healthy")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def test_e2e_created_route_survives_restart(
    tmp_config: Callable[..., Path], free_port: int, tmp_path: Path
) -> None:
    config = tmp_config(CONFIG)
    log = tmp_path / "server.log"
    with _serve(config, free_port, log) as url, GatewayClient(url, api_key=ADMIN_KEY) as client:
        route = client.create_route("kept", "llm/v1/chat", {"name": "fake-chat", "provider": "fake"})
        assert route.name == "kept"
    assert "- name: kept" in config.read_text()
    assert config.read_text().startswith("# e2e: this comment must survive\n")
    with _serve(config, free_port, log) as url, GatewayClient(url, api_key=ADMIN_KEY) as client:
        assert client.get_route("kept").model.provider == "fake"
        assert client.query("kept", {"messages": [{"role": "user", "content": "hi"}]})
        client.delete_route("kept")
        assert [r.name for r in client.search_routes()] == ["chat"]
    assert "kept" not in config.read_text()
    assert ADMIN_KEY not in log.read_text()
