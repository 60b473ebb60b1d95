"""Hot reload inside the serving process: the pure route diff, and the watcher under load.

The watcher polls every 20 ms here (1 s in production). Every wait is a poll with a deadline.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from gateway_server.app import GatewayApp, create_app
from gateway_server.config import load_config, parse_config
from gateway_server.limits import WORKERS_ENV
from gateway_server.reload import ConfigWatcher, RouteChanges, diff_routes
from gateway_server.testing import FakeOpenAI, Fault, serve_in_thread, wait_until

INTERVAL = 0.02
CHAT = {"messages": [{"role": "user", "content": "hello there"}]}


def _fake_route(name: str, prefix: str = "fake says:") -> str:
    return f"""
  - name: {name}
    route_type: llm/v1/chat
    model: {{provider: fake, name: fake-chat, config: {{reply_prefix: '{prefix}'}}}}"""


def _openai_route(name: str, api_base: str, model: str = "gpt-4o-mini", key: str = "sk-test") -> str:
    return f"""
  - name: {name}
    route_type: llm/v1/chat
    model: {{provider: openai, name: {model}, config: {{openai_api_key: '{key}', openai_api_base: '{api_base}'}}}}"""


def _file(*routes: str) -> str:
    return "routes:" + "".join(routes) + "\n"


def _write(path: Path, text: str, *, rename: bool) -> None:
    """Write in place, or the way editors and atomic writers do: a temp file renamed over."""
    if rename:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    else:
        path.write_text(text, encoding="utf-8")


def _watcher(app: GatewayApp) -> ConfigWatcher:
    watcher = app.state.extras["config_watcher"]
    assert isinstance(watcher, ConfigWatcher)
    return watcher


@contextmanager
def _gateway(path: Path) -> Iterator[tuple[GatewayApp, httpx.Client]]:
    app = create_app(load_config(path), reload_interval=INTERVAL)
    with (
        serve_in_thread(app, lifespan="on") as server,
        httpx.Client(base_url=server.url, timeout=10) as client,
    ):
        wait_until(lambda: _watcher(app).reloads >= 1, message="the watcher's first look")
        yield app, client


def _wait_for(watcher: ConfigWatcher, attribute: str, before: int) -> None:
    wait_until(lambda: getattr(watcher, attribute) > before, 5, message=f"watcher {attribute} to move")


def _hammer(
    call: Callable[[httpx.Client], httpx.Response], client: httpx.Client, stop: threading.Event
) -> Callable[[], tuple[int, list[str]]]:
    """Run ``call`` in 8 threads until ``stop``; returns a function giving (ok count, failures)."""
    failures: list[str] = []
    done = [0]
    lock = threading.Lock()

    def loop() -> None:
        while not stop.is_set():
            try:
                response = call(client)
                ok = response.status_code == 200
                problem = f"{response.status_code} {response.text[:200]}"
            except httpx.HTTPError as exc:
                ok, problem = False, repr(exc)
            with lock:
                done[0] += 1
                if not ok:
                    failures.append(problem)

    pool = ThreadPoolExecutor(8)
    futures = [pool.submit(loop) for _ in range(8)]

    def finish() -> tuple[int, list[str]]:
        stop.set()
        for future in futures:
            future.result(timeout=15)
        pool.shutdown()
        return done[0], failures

    return finish


# ---------------------------------------------------------------- the pure diff


def test_diff_routes_names_added_removed_changed() -> None:
    old = parse_config(_file(_fake_route("a"), _fake_route("b"), _fake_route("c")))
    new = parse_config(_file(_fake_route("a"), _fake_route("c", "other:"), _fake_route("d")))
    changes = diff_routes(old.routes, new.routes)
    assert changes == RouteChanges(added=("d",), removed=("b",), changed=("c",), unchanged=1)
    assert changes.summary() == "added: d; removed: b; changed: c; 1 unchanged"


def test_diff_routes_same_file_is_no_change() -> None:
    config = parse_config(_file(_fake_route("a"), _fake_route("b")))
    changes = diff_routes(config.routes, parse_config(_file(_fake_route("a"), _fake_route("b"))).routes)
    assert not changes
    assert changes.summary() == "no route changes; 2 unchanged"


def test_diff_routes_counts_a_rotated_secret_as_a_change(monkeypatch: pytest.MonkeyPatch) -> None:
    text = _file(_openai_route("chat", "http://127.0.0.1:9/v1", key="$OPENAI_API_KEY"))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-one")
    old = parse_config(text)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-two")
    assert diff_routes(old.routes, parse_config(text).routes).changed == ("chat",)


# ---------------------------------------------------------------- the watcher in a serving app


def test_reload_under_load_fails_no_request(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(_file(_fake_route("stable"), _fake_route("extra0")), encoding="utf-8")
    caplog.set_level(logging.INFO, logger="gateway_server.runtime")  # RouteTable logs each swap
    with _gateway(path) as (app, client):
        watcher = _watcher(app)
        finish = _hammer(
            lambda c: c.post("/gateway/stable/invocations", json=CHAT), client, threading.Event()
        )
        for i in range(1, 11):
            before = watcher.reloads
            text = _file(_fake_route("stable", f"version {i}:"), _fake_route(f"extra{i}"))
            _write(path, text, rename=i % 2 == 0)
            _wait_for(watcher, "reloads", before)
        count, failures = finish()
        assert failures == []
        assert count > 20
        answer = client.post("/gateway/stable/invocations", json=CHAT).json()
        assert answer["candidates"][0]["message"]["content"].startswith("version 10:")
        assert client.post("/gateway/extra9/invocations", json=CHAT).status_code == 404
        assert client.post("/gateway/extra10/invocations", json=CHAT).status_code == 200
    lines = [r.getMessage() for r in caplog.records if "reloaded" in r.getMessage()]
    assert any(
        line.endswith("added: extra10; removed: extra9; changed: stable; 0 unchanged") for line in lines
    )
    assert all("\n" not in line for line in lines)


def test_reload_keeps_slow_requests_and_streams_in_flight(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    """Requests and streams that resolved the old route finish on it, while the table is swapped."""
    path = tmp_path / "gateway.yaml"
    api_base = fake_openai.api_base
    path.write_text(_file(_openai_route("chat", api_base, model="model-0")), encoding="utf-8")
    fake_openai.inject(Fault(delay=0.05, chunk_delay=0.01), times=None)

    calls = itertools.count()
    streams: list[str] = []

    def call(client: httpx.Client) -> httpx.Response:
        if next(calls) % 2:
            return client.post("/gateway/chat/invocations", json=CHAT)
        response = client.post("/gateway/chat/invocations", json={**CHAT, "stream": True})
        if not response.text.rstrip().endswith("data: [DONE]"):  # a stream cut short is still a 200
            raise httpx.HTTPError(f"stream did not finish: {response.text[-200:]}")
        streams.append(response.text)
        return response

    with _gateway(path) as (app, client):
        watcher = _watcher(app)
        finish = _hammer(call, client, threading.Event())
        for i in range(1, 7):
            before = watcher.reloads
            _write(path, _file(_openai_route("chat", api_base, model=f"model-{i}")), rename=bool(i % 2))
            _wait_for(watcher, "reloads", before)
            wait_until(lambda m=f"model-{i}": m in _models(fake_openai), message="traffic on the new config")
        count, failures = finish()
    assert failures == []
    assert _models(fake_openai) == {f"model-{i}" for i in range(7)}
    assert count >= 8 and len(streams) >= 4


def _models(fake: FakeOpenAI) -> set[str]:
    return {request.json["model"] for request in fake.requests}


def test_bad_file_mid_load_changes_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "gateway.yaml"
    good = _file(_fake_route("stable"), _fake_route("other"))
    path.write_text(good, encoding="utf-8")
    bad = _file(_fake_route("stable"), _fake_route("Bad Name!"), _fake_route("stable"))
    with _gateway(path) as (app, client):
        watcher = _watcher(app)
        finish = _hammer(
            lambda c: c.post("/gateway/stable/invocations", json=CHAT), client, threading.Event()
        )
        reloads, failed = watcher.reloads, watcher.failures
        _write(path, bad, rename=True)
        _wait_for(watcher, "failures", failed)
        path.write_text("routes: [", encoding="utf-8")  # not even YAML
        _wait_for(watcher, "failures", failed + 1)
        count, failures = finish()
        assert failures == [] and count > 0
        assert watcher.reloads == reloads
        assert client.post("/gateway/other/invocations", json=CHAT).status_code == 200
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert "keeping the current 2 route(s)" in errors[0]
    assert (
        "Bad Name!" in errors[0] and "'stable' is already used" in errors[0]
    )  # every problem, not the first
    assert "not valid YAML" in errors[1]


def test_kubernetes_symlink_swap_is_picked_up(tmp_path: Path) -> None:
    """A ConfigMap volume: gateway.yaml -> ..data/gateway.yaml, ..data -> ..<timestamp>/; an update
    writes a new timestamped directory and renames a new ``..data`` link over the old one."""
    mount = tmp_path / "mount"

    def publish(version: str, text: str) -> None:
        target = mount / f"..{version}"
        target.mkdir(parents=True)
        (target / "gateway.yaml").write_text(text, encoding="utf-8")
        (mount / "..data_tmp").symlink_to(target.name)
        os.replace(mount / "..data_tmp", mount / "..data")

    publish("2024_01", _file(_fake_route("stable"), _fake_route("old")))
    path = mount / "gateway.yaml"
    path.symlink_to("..data/gateway.yaml")
    with _gateway(path) as (_, client):
        assert client.post("/gateway/old/invocations", json=CHAT).status_code == 200
        publish("2024_02", _file(_fake_route("stable"), _fake_route("new")))
        wait_until(
            lambda: client.post("/gateway/new/invocations", json=CHAT).status_code == 200,
            5,
            message="the new route",
        )
        assert client.post("/gateway/old/invocations", json=CHAT).status_code == 404
        assert client.post("/gateway/stable/invocations", json=CHAT).status_code == 200


def test_rotated_secret_file_is_re_resolved(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    """A key read from a file (a Secret volume) is read again when that file changes."""
    key = tmp_path / "openai-key"
    key.write_text("sk-first\n", encoding="utf-8")
    path = tmp_path / "gateway.yaml"
    path.write_text(_file(_openai_route("chat", fake_openai.api_base, key=str(key))), encoding="utf-8")
    with _gateway(path) as (app, client):
        assert client.post("/gateway/chat/invocations", json=CHAT).status_code == 200
        assert fake_openai.last_request.headers["authorization"] == "Bearer sk-first"
        before = _watcher(app).reloads
        _write(key, "sk-second\n", rename=True)
        _wait_for(_watcher(app), "reloads", before)
        assert client.post("/gateway/chat/invocations", json=CHAT).status_code == 200
        assert fake_openai.last_request.headers["authorization"] == "Bearer sk-second"


def test_no_watcher_without_reload_interval(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(_file(_fake_route("stable")), encoding="utf-8")
    app = create_app(load_config(path))
    with serve_in_thread(app, lifespan="on"):
        assert "config_watcher" not in app.state.extras


def test_reload_applies_rotated_gateway_keys(tmp_path: Path) -> None:
    """Gateway API keys are part of the reload: a rotated key works at once, the old one stops."""
    path = tmp_path / "gateway.yaml"

    def with_key(key: str) -> str:
        return (
            _file(_fake_route("chat"))
            + f"auth:\n  keys:\n    - {{name: app, key: '{key}', scopes: [query]}}\n"
        )

    path.write_text(with_key("gk-old-0001"), encoding="utf-8")
    with _gateway(path) as (_, client):
        old = {"Authorization": "Bearer gk-old-0001"}
        new = {"Authorization": "Bearer gk-new-0002"}
        assert client.post("/gateway/chat/invocations", json=CHAT, headers=old).status_code == 200
        _write(path, with_key("gk-new-0002"), rename=True)
        wait_until(
            lambda: client.post("/gateway/chat/invocations", json=CHAT, headers=new).status_code == 200,
            5,
            message="the rotated key",
        )
        assert client.post("/gateway/chat/invocations", json=CHAT, headers=old).status_code == 401


def test_secret_file_is_hashed_again_only_when_its_stat_changes(tmp_path: Path) -> None:
    """A large secret file must not be re-hashed every second: size, mtime and inode are looked at first."""
    from gateway_server.reload import fingerprint

    key = tmp_path / "big-key"
    key.write_bytes(b"a" * 4096)
    cache: dict = {}
    first = fingerprint([str(key)], cache)
    stat = key.stat()
    # Same size, mtime put back: to a stat-first poller, nothing changed, so the file is not read.
    with open(key, "r+b") as file:
        file.write(b"b" * 4096)
    os.utime(key, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert fingerprint([str(key)], cache) == first
    assert fingerprint([str(key)]) != first  # without the cache the content is hashed
    key.write_bytes(b"c" * 4097)  # a real change: another size (and mtime)
    changed = fingerprint([str(key)], cache)
    assert changed != first and changed == fingerprint([str(key)])


def test_credential_secret_files_are_watched(tmp_path: Path) -> None:
    from gateway_server.reload import secret_files

    key = tmp_path / "cred-key"
    key.write_text("sk-cred\n", encoding="utf-8")
    config = parse_config(
        f"credentials:\n  c: {{provider: openai, config: {{openai_api_key: {key}}}}}\n"
        "routes:\n  - {name: r, route_type: llm/v1/chat, model: {provider: fake}}\n"
    )
    assert secret_files(config) == [str(key)]


def test_a_limit_added_under_several_workers_without_shared_state_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under ``--workers 2`` without ``server.shared_state`` each worker would count a limit (or a
    budget) alone: a reload that adds one is refused like a bad file, and so is a route created at
    run time with one; the current routes keep serving."""
    monkeypatch.setenv(WORKERS_ENV, "2")  # what the runner sets for --workers 2
    path = tmp_path / "gateway.yaml"
    path.write_text(_file(_fake_route("stable")), encoding="utf-8")
    with _gateway(path) as (app, client):
        watcher = _watcher(app)
        reloads, failed = watcher.reloads, watcher.failures
        limited = _fake_route("stable") + "\n    limit: {calls: 5, renewal_period: minute}"
        _write(path, _file(limited), rename=True)
        _wait_for(watcher, "failures", failed)
        assert watcher.reloads == reloads
        assert client.post("/gateway/stable/invocations", json=CHAT).status_code == 200
        app.state.auth.allow_unauthenticated_admin = True  # serve --allow-unauthenticated-admin
        created = client.post(
            "/api/2.0/gateway/routes/",
            json={
                "name": "capped",
                "route_type": "llm/v1/chat",
                "model": {"provider": "fake", "name": "fake-chat"},
                "limit": {"calls": 5, "renewal_period": "minute"},
            },
        )
        assert created.status_code == 400, created.text
        assert "2 workers without server.shared_state" in created.json()["error"]["message"]
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert "--workers 2" in errors[0] and "route 'stable'" in errors[0]
