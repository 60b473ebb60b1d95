"""The real gateway process for the end-to-end tests, and what it talks to.

- ``e2e_openai``: a :class:`FakeOpenAI` that insists on the sentinel key (session), reset per test;
- ``gateway``: one ``gatewayctl serve`` process for the session (:class:`GatewayProcess`) whose
  config (``e2e_support.gateway_config``) has ``fake`` routes, ``openai`` routes pointed at ``e2e_openai`` with the
  sentinel key, and routes built to fail (1 s timeout, closed port, wrong key);
- ``http``: an httpx client on that gateway which checks every response for the sentinel;
- ``start``: ``start(config_path, *serve_args)`` starts a gateway of the test's own, stopped at the
  test's end (a module may override it with its own environment and arguments).

After the session the gateway is stopped and its whole output is checked for the sentinel too.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from e2e_support import SENTINEL, assert_no_sentinel, gateway_config

from gateway_server.testing import FakeOpenAI
from gateway_server.testing.process import GatewayProcess

_NOTES: list[str] = []


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., GatewayProcess]]:
    with ExitStack() as stack:
        count = 0

        def run(config: Path, *args: str) -> GatewayProcess:
            nonlocal count
            count += 1
            process = GatewayProcess(config, log_dir=tmp_path, name=f"gw{count}", args=list(args))
            return stack.enter_context(process)

        yield run


@pytest.fixture(scope="session")
def e2e_openai_server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(api_key=SENTINEL).serve() as fake:
        yield fake


@pytest.fixture
def e2e_openai(e2e_openai_server: FakeOpenAI) -> Iterator[FakeOpenAI]:
    """The upstream of the ``openai-*`` routes, freshly reset (no requests, no faults)."""
    e2e_openai_server.reset()
    yield e2e_openai_server
    e2e_openai_server.reset()


@pytest.fixture(scope="session")
def closed_port() -> Iterator[int]:
    """A port that refuses connections for the whole session: bound here but never listening, so
    connecting gets ECONNREFUSED and no other process can take the port meanwhile."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture(scope="session")
def gateway(
    e2e_openai_server: FakeOpenAI, closed_port: int, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    workdir = tmp_path_factory.mktemp("e2e-gateway")
    config_path = Path(workdir) / "gateway.yaml"
    config = gateway_config(e2e_openai_server.api_base, f"http://127.0.0.1:{closed_port}/v1")
    config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    process = GatewayProcess(config_path, log_dir=workdir, name="e2e")
    process.start()
    _NOTES.append(
        f"e2e: gateway started via {process.launcher} ({' '.join(process.command[1:3])}...) "
        f"in {process.startup_seconds:.1f}s"
    )
    try:
        yield process
    finally:
        code = process.stop()
        _NOTES.append(f"e2e: session gateway exited with code {code}")
    # After every request of the session, the error ones included, and after shutdown.
    assert SENTINEL not in process.output, "the provider key appeared in the gateway's output"


@pytest.fixture
def http(gateway: GatewayProcess) -> Iterator[httpx.Client]:
    """An httpx client on the session gateway; every response is checked for the sentinel key."""
    assert gateway.alive, f"the gateway process died (exit code {gateway.returncode}):\n{gateway.output}"
    with httpx.Client(
        base_url=gateway.url,
        trust_env=False,
        timeout=15.0,
        event_hooks={"response": [assert_no_sentinel]},
    ) as client:
        yield client
    assert gateway.alive, f"the gateway process died (exit code {gateway.returncode}):\n{gateway.output}"


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for note in _NOTES:
        terminalreporter.write_line(note)
