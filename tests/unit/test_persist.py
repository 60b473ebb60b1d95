"""persist: route changes rewrite the config file atomically and keep what the operator wrote."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway_server.config import load_config
from gateway_server.errors import ConfigError, RouteExistsError, RouteNotFoundError
from gateway_server.persist import add_route, atomic_write, remove_route

CONFIG = """\
# Gateway for the team. Keep keys out of this file.
routes:
  # the main chat route
  - name: chat   # used by the web app
    route_type: llm/v1/chat
    model: {provider: fake, name: fake-chat}
  - name: embeddings
    route_type: llm/v1/embeddings
    model:
      provider: "fake"
      name: fake-embeddings
      config:
        embedding_dimensions: 16
server:
  max_request_bytes: 4096   # small on purpose
"""

NEW_ROUTE = {
    "name": "gpt",
    "route_type": "llm/v1/chat",
    "model": {"name": "gpt-4o-mini", "provider": "openai", "config": {"openai_api_key": "$GW_TEST_OPENAI"}},
}

Writer = Callable[..., Path]


@pytest.fixture(autouse=True)
def _openai_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GW_TEST_OPENAI", "sk-value-never-written")


def test_persist_add_route_appends_and_keeps_the_rest(tmp_config: Writer) -> None:
    path = tmp_config(CONFIG)
    add_route(path, NEW_ROUTE)
    text = path.read_text()
    assert text.startswith(CONFIG.split("server:")[0])  # comments, flow style and quotes untouched
    assert "  - name: gpt\n    route_type: llm/v1/chat\n    model:\n      name: gpt-4o-mini\n" in text
    assert "openai_api_key: $GW_TEST_OPENAI" in text  # the reference, as given
    assert "sk-value-never-written" not in text
    assert "max_request_bytes: 4096   # small on purpose" in text
    config = load_config(path)
    assert [route.name for route in config.routes] == ["chat", "embeddings", "gpt"]
    assert config.server.max_request_bytes == 4096


def test_persist_remove_route_keeps_the_rest(tmp_config: Writer) -> None:
    path = tmp_config(CONFIG)
    remove_route(path, "embeddings")
    text = path.read_text()
    assert "embeddings" not in text
    assert "# Gateway for the team." in text
    assert "- name: chat   # used by the web app" in text
    assert "model: {provider: fake, name: fake-chat}" in text
    assert [route.name for route in load_config(path).routes] == ["chat"]


def test_persist_keeps_flush_sequence_style_and_endpoints_spelling(tmp_config: Writer) -> None:
    path = tmp_config(
        """\
        endpoints:
        - name: chat
          endpoint_type: llm/v1/chat
          model:
            provider: fake
            name: fake-chat
        """
    )
    add_route(
        path, {"name": "e2", "endpoint_type": "llm/v1/chat", "model": {"provider": "fake", "name": "m"}}
    )
    assert path.read_text().endswith(
        "- name: e2\n  endpoint_type: llm/v1/chat\n  model:\n    provider: fake\n    name: m\n"
    )
    assert [route.name for route in load_config(path).routes] == ["chat", "e2"]


def test_persist_duplicate_and_unknown_names(tmp_config: Writer) -> None:
    path = tmp_config(CONFIG)
    before = path.read_text()
    with pytest.raises(RouteExistsError):
        add_route(path, {**NEW_ROUTE, "name": "chat"})
    with pytest.raises(RouteNotFoundError):
        remove_route(path, "nope")
    assert path.read_text() == before


def test_persist_never_writes_a_file_the_gateway_cannot_load(tmp_config: Writer) -> None:
    path = tmp_config(CONFIG)
    before = path.read_text()
    with pytest.raises(ConfigError, match="unknown provider"):
        add_route(path, {"name": "bad", "route_type": "llm/v1/chat", "model": {"provider": "nope"}})
    assert path.read_text() == before
    assert sorted(os.listdir(path.parent)) == [path.name]


def test_persist_atomic_write_keeps_mode_and_leaves_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text("old\n")
    path.chmod(0o600)
    atomic_write(path, "new\n")
    assert path.read_text() == "new\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert os.listdir(tmp_path) == ["gateway.yaml"]


def test_persist_atomic_write_failure_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text("old\n")

    def fail(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="No space left"):
        atomic_write(path, "new\n")
    assert path.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["gateway.yaml"]
