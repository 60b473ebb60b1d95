"""Fixtures of the MLflow 2.8.1 compatibility tests.

- ``mlflow_python``: the interpreter of the MLflow 2.8.1 venv (``mlflow_support.ensure_mlflow_venv``).
  If it cannot be built, the tests FAIL when ``CI`` is set; elsewhere they skip when the package
  registry was unreachable and fail for any other reason;
- ``compat_gateway``: our gateway as a real process (``gatewayctl serve``), its ``openai`` routes
  pointed at the session's FakeOpenAI, plus ``FILLER_ROUTES`` routes so that the route list spans
  two of MLflow's fixed 3000-route pages;
- ``mlflow``: ``mlflow(script) -> result``: runs a script in the venv against that gateway.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from compat_routes import gateway_config, route_names
from mlflow_support import VENV, VenvUnavailable, ensure_mlflow_venv, run_mlflow

from gateway_server.testing import FakeOpenAI
from gateway_server.testing.process import GatewayProcess

_NOTES: list[str] = []


@pytest.fixture(scope="session")
def mlflow_python() -> Path:
    try:
        info = ensure_mlflow_venv()
    except VenvUnavailable as exc:
        cause = "the package registry was unreachable: " if exc.network else ""
        message = f"cannot build the MLflow 2.8.1 venv at {VENV}: {cause}{exc}"
        if os.environ.get("CI") or not exc.network:
            pytest.fail(message, pytrace=False)
        pytest.skip(f"{message}\n(set CI=1 to make this a failure)")
    action = f"built in {info.seconds:.1f}s" if info.built else f"reused (checked in {info.seconds:.1f}s)"
    versions = ", ".join(f"{name} {version}" for name, version in info.versions.items())
    _NOTES.append(f"compat: MLflow venv {action} at {VENV} ({versions})")
    return info.python


@pytest.fixture(scope="session")
def compat_gateway(
    fake_openai_server: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    workdir = tmp_path_factory.mktemp("compat-gateway")
    config = Path(workdir) / "gateway.yaml"
    # ~3000 routes: the gateway takes a few seconds to load them, hence the longer startup deadline.
    config.write_text(
        yaml.safe_dump(gateway_config(fake_openai_server.api_base), sort_keys=False), encoding="utf-8"
    )
    process = GatewayProcess(config, log_dir=workdir, name="compat", startup_timeout=90)
    process.start()
    _NOTES.append(
        f"compat: gateway ({process.launcher}, {len(route_names())} routes) healthy in {process.startup_seconds:.1f}s"
    )
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def mlflow(mlflow_python: Path, compat_gateway: GatewayProcess) -> Callable[..., Any]:
    """``mlflow(script, gateway_url=<ours>)``: run ``script`` with the MLflow 2.8.1 client; return its result."""
    assert compat_gateway.alive, compat_gateway.output

    def run(script: str, gateway_url: str | None = compat_gateway.url) -> Any:
        return run_mlflow(mlflow_python, script, gateway_url)

    return run


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for note in _NOTES:
        terminalreporter.write_line(note)
