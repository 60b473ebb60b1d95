"""CLI tests: typer's CliRunner against the real app; a real gateway in a thread where one is needed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import ADMIN_KEY, AUTH_SECTION, FAKE_CONFIG
from typer.testing import CliRunner, Result

from gateway_server.app import create_app
from gateway_server.config import load_config
from gateway_server.testing import serve_in_thread
from gatewayctl import _uri
from gatewayctl.cli.app import app


@pytest.fixture(autouse=True)
def _no_stored_uri() -> Iterator[None]:
    _uri._reset_gateway_uri()
    yield
    _uri._reset_gateway_uri()


@pytest.fixture
def cli() -> Callable[..., Result]:
    """``cli("routes", "list", input=..., env=...)`` runs gatewayctl in-process and returns the result."""
    runner = CliRunner()

    def invoke(*args: str, **kwargs: Any) -> Result:
        return runner.invoke(app, list(args), prog_name="gatewayctl", **kwargs)

    return invoke


@pytest.fixture(scope="session")
def gateway_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real gateway (create_app on the offline ``fake`` provider) served on 127.0.0.1 for the session."""
    path: Path = tmp_path_factory.mktemp("gateway") / "fake.yaml"
    path.write_text(FAKE_CONFIG, encoding="utf-8")
    with serve_in_thread(create_app(load_config(path))) as server:
        yield server.url


@pytest.fixture
def admin_gateway_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh gateway with an admin key (``cli_helpers.ADMIN_KEY``); route changes go to its own file."""
    monkeypatch.setenv("CLI_TEST_ADMIN_KEY", ADMIN_KEY)
    path = tmp_path / "gateway.yaml"
    path.write_text(FAKE_CONFIG + AUTH_SECTION, encoding="utf-8")
    with serve_in_thread(create_app(load_config(path))) as server:
        yield server.url
