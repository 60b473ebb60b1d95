"""Fixtures shared by the whole suite.

- every test runs without provider keys or gateway settings from the caller's environment;
- ``tmp_config(text)`` writes a YAML file and returns its path;
- ``free_port`` is a TCP port for a subprocess server (in-process servers bind port 0 instead);
- ``fake_openai`` is a :class:`~gateway_server.testing.FakeOpenAI` served on 127.0.0.1 once per
  session and reset (requests forgotten, faults disarmed) around every test that uses it;
- ``redis_url`` is an empty database of a ``redis-server`` started on 127.0.0.1 once per session
  (``server.shared_state`` tests). Without redis-server those tests skip locally and fail in CI
  (``CI=true``), where ``scripts/test`` installs it.

New vendor fakes follow the ``fake_openai`` pattern: a session fixture that serves the fake, and a
function fixture that resets it.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway_server.testing import FakeOpenAI
from gateway_server.testing import free_port as _free_port
from gateway_server.testing.redis_server import RedisServer, redis_server_binary

_ISOLATED_PREFIXES = ("GATEWAYCTL_", "MLFLOW_GATEWAY_")
_ISOLATED_SUFFIXES = ("_API_KEY",)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Delete ``*_API_KEY``, ``GATEWAYCTL_*`` and ``MLFLOW_GATEWAY_*`` for the duration of each test."""
    for name in list(os.environ):
        if name.startswith(_ISOLATED_PREFIXES) or name.endswith(_ISOLATED_SUFFIXES):
            monkeypatch.delenv(name)


@pytest.fixture
def tmp_config(tmp_path: Path) -> Callable[..., Path]:
    """``tmp_config(text_or_mapping, name="gateway.yaml") -> Path``: write a config file under tmp_path.

    A string is dedented and written as is (so tests control line numbers); a mapping is dumped as YAML.
    """

    def write(content: str | dict[str, Any], name: str = "gateway.yaml") -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            text = textwrap.dedent(content).lstrip("\n")
        else:
            text = yaml.safe_dump(content, sort_keys=False)
        path.write_text(text, encoding="utf-8")
        return path

    return write


@pytest.fixture
def free_port() -> int:
    return _free_port()


@pytest.fixture(scope="session")
def fake_openai_server() -> Iterator[FakeOpenAI]:
    """One FakeOpenAI for the session; tests use ``fake_openai``, which resets it."""
    with FakeOpenAI().serve() as fake:
        yield fake


@pytest.fixture
def fake_openai(fake_openai_server: FakeOpenAI) -> Iterator[FakeOpenAI]:
    """The session's FakeOpenAI (``.url``, ``.api_base``, ``.requests``, ``.inject()``), freshly reset."""
    fake_openai_server.reset()
    yield fake_openai_server
    fake_openai_server.reset()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One throw-away redis-server for the session (no persistence), stopped at the end."""
    if redis_server_binary() is None:
        reason = "redis-server is not installed (scripts/test installs it: apt-get install redis-server)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI must run the shared-state tests", pytrace=False)
        pytest.skip(reason)
    with RedisServer(work_dir=tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """``redis://127.0.0.1:PORT/0`` of the session's redis-server, emptied for this test."""
    redis_server.flush()
    return redis_server.url
