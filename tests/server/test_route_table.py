"""The live route set has one owner (runtime/table.py): config and index never disagree."""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from gateway_server.app import create_app
from gateway_server.config import load_config, parse_config
from gateway_server.errors import GatewayError, RouteExistsError, RouteNotFoundError
from gateway_server.runtime import RouteTable
from gateway_server.testing import serve_in_thread

CONFIG = """\
routes:
  - name: a
    route_type: llm/v1/chat
    model: {provider: fake, name: fake-chat}
"""
ROUTES = "/api/2.0/gateway/routes/"
CHAT = {"messages": [{"role": "user", "content": "Hello"}]}


def _route(name: str) -> dict[str, object]:
    return {"name": name, "route_type": "llm/v1/chat", "model": {"name": "fake-chat", "provider": "fake"}}


def _names(routes: list) -> list[str]:
    return [route.name for route in routes]


def test_a_created_route_is_in_the_config_and_the_index_alike(tmp_config: Callable[..., Path]) -> None:
    """Before the route table, a POST updated the registry but not ``state.config`` (reload off, the
    library default): the two disagreed for good, and whatever read the config saw the old set."""
    app = create_app(load_config(tmp_config(CONFIG)))  # no reload_interval: nothing re-reads the file
    app.state.auth.allow_unauthenticated_admin = True
    state = app.state
    with serve_in_thread(app) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        assert client.post(ROUTES, json=_route("b")).status_code == 200
        assert _names(state.config.routes) == ["a", "b"]
        assert [entry.name for entry in state.registry.list()] == ["a", "b"]
        assert client.delete(f"{ROUTES}a").status_code == 200
        assert _names(state.config.routes) == ["b"]
        assert [entry.name for entry in state.registry.list()] == ["b"]
        assert client.post("/gateway/b/invocations", json=CHAT).status_code == 200


def test_each_change_is_one_log_line_and_unchanged_entries_are_kept(
    tmp_config: Callable[..., Path], caplog: pytest.LogCaptureFixture
) -> None:
    table = RouteTable(load_config(tmp_config(CONFIG)))
    before = table.get("a")
    caplog.set_level(logging.INFO, logger="gateway_server.runtime")
    asyncio.run(table.create(_route("b"), key="ops"))
    asyncio.run(table.delete("b"))
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 2
    assert lines[0].startswith("route 'b' created (saved to ") and lines[0].endswith(
        " by key 'ops': added: b; 1 unchanged"
    )
    assert lines[1].endswith(
        " by a caller without a key (the gateway has no auth: keys): removed: b; 1 unchanged"
    )
    # Who made the change, by key *name*, as a field of JSON lines too.
    assert [getattr(record, "changed_by", None) for record in caplog.records] == ["key:ops", "no-key"]
    assert table.get("a") is before  # the untouched route's adapters were not rebuilt


def test_duplicate_and_unknown_names(tmp_config: Callable[..., Path]) -> None:
    table = RouteTable(load_config(tmp_config(CONFIG)))

    async def both() -> list[object]:
        return await asyncio.gather(table.create(_route("b")), table.create(_route("b")), return_exceptions=True)

    outcomes = asyncio.run(both())
    assert sum(isinstance(outcome, RouteExistsError) for outcome in outcomes) == 1
    with pytest.raises(RouteNotFoundError):
        asyncio.run(table.delete("nope"))
    assert _names(table.config.routes) == ["a", "b"]


def test_a_route_that_could_not_be_saved_is_not_served(tmp_path: Path) -> None:
    directory = tmp_path / "conf"
    directory.mkdir()
    path = directory / "gateway.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    table = RouteTable(load_config(path))
    shutil.rmtree(directory)  # the file is gone: the change cannot be saved
    with pytest.raises(GatewayError, match="cannot read the config file"):
        asyncio.run(table.create(_route("b")))
    assert table.get("b") is None and _names(table.config.routes) == ["a"]


def test_a_reloaded_file_is_the_whole_truth_again(tmp_config: Callable[..., Path]) -> None:
    path = tmp_config(CONFIG)
    table = RouteTable(load_config(path))
    asyncio.run(table.create(_route("b")))
    assert "name: b" in path.read_text()
    table.apply(load_config(path), "config reloaded")  # the file now has b: nothing changes
    assert _names(table.config.routes) == ["a", "b"]
    table.apply(parse_config(CONFIG, str(path)), "config reloaded")  # an operator removed b by hand
    assert _names(table.config.routes) == ["a"] and table.get("b") is None
