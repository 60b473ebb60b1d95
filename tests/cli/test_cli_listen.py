"""`gatewayctl serve` on an address it cannot use: exit 7 and one `error:` line naming the address,
never 3 (invalid configuration), never uvicorn's own exit status; "serving ... on URL" only once bound.

These start the real `gatewayctl serve` process; each ends by itself, before serving anything.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_helpers import FAKE_CONFIG

from gateway_server.testing.process import _child_env

CANNOT_LISTEN = 7


@pytest.fixture
def config(tmp_path: Path) -> str:
    path = tmp_path / "gateway.yaml"
    path.write_text(FAKE_CONFIG, encoding="utf-8")
    return str(path)


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gatewayctl", "serve", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=_child_env(None),
        check=False,
    )


def test_a_port_in_use_exits_7_naming_the_address(config: str, taken_port: int) -> None:
    result = serve(config, "--port", str(taken_port))
    assert result.returncode == CANNOT_LISTEN, result.stderr
    assert f"error: cannot listen on 127.0.0.1:{taken_port}: the port is already in use" in result.stderr
    assert "serving" not in result.stderr  # nothing announced before the bind
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("host", "reason"),
    [("no-such-host.invalid", "unknown host"), ("192.0.2.1", "this machine has no such address")],
)
def test_a_bad_host_exits_7_naming_the_address(config: str, host: str, reason: str) -> None:
    result = serve(config, "--host", host, "--port", "5999")
    assert result.returncode == CANNOT_LISTEN, result.stderr
    assert f"error: cannot listen on {host}:5999: {reason}" in result.stderr
    assert "serving" not in result.stderr
