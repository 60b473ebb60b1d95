"""``gatewayctl serve CONFIG --workers 2`` as a real process tree: SIGTERM drains every worker and
refuses new connections, a rewritten config file reaches both workers, and each route change
(admin API, file edit, rejected file) is one log line for the whole server, naming who made it.

Which worker answered is read from /proc, not from anything the gateway exposes: the server side
of a client's connection is found in ``/proc/net/tcp`` by its two ports, and the worker is the child
process holding a descriptor on that socket. The slow upstream is a FakeOpenAI in this process.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway_server.testing import FakeOpenAI, Fault, wait_until
from gateway_server.testing.process import GatewayProcess

pytestmark = pytest.mark.e2e

CHAT = {"messages": [{"role": "user", "content": "one two three four five six"}]}
UPSTREAM_DELAY = 3.0  # seconds each upstream call takes in the shutdown test


# ---------------------------------------------------------------- which process holds a connection


def _descendants(pid: int) -> set[int]:
    found: set[int] = set()
    pending = [pid]
    while pending:
        parent = pending.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except FileNotFoundError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{parent}/task/{task}/children", encoding="ascii") as file:
                    children = {int(child) for child in file.read().split()}
            except FileNotFoundError:
                continue
            pending.extend(children - found)
            found |= children
    return found


def _server_socket_inode(server_port: int, client_port: int) -> str | None:
    local, remote = f"0100007F:{server_port:04X}", f"0100007F:{client_port:04X}"
    with open("/proc/net/tcp", encoding="ascii") as file:
        for line in file.readlines()[1:]:
            fields = line.split()
            if fields[1] == local and fields[2] == remote and fields[9] != "0":
                return fields[9]
    return None


def _owner(gateway: GatewayProcess, client_port: int) -> int:
    """The process of the gateway's tree that holds the server side of the connection from ``client_port``."""
    assert gateway.process is not None
    inode = _server_socket_inode(gateway.port, client_port)
    assert inode is not None, f"no server socket for client port {client_port}"
    target = f"socket:[{inode}]"
    for pid in _descendants(gateway.process.pid):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except FileNotFoundError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    return pid
            except FileNotFoundError:
                continue
    raise AssertionError(f"no process of the gateway holds {target}")


def _exited(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as file:
            return file.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


# ---------------------------------------------------------------- requests on fresh connections


@contextmanager
def _paused(pid: int) -> Iterator[None]:
    """Stop a worker (SIGSTOP) for a moment. Which worker accepts a new connection is the kernel's
    choice and often the same one many times in a row; with one stopped, the other must."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def _post(
    gateway: GatewayProcess, route: str, body: dict[str, object], headers: dict[str, str] | None = None
) -> tuple[int, int]:
    """POST on a new connection; (the worker that answered, status). Keep-alive: the worker still
    holds the connection when it is looked up, then the connection is closed."""
    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=10)
    try:
        connection.request(
            "POST",
            f"/gateway/{route}/invocations",
            json.dumps(body),
            {"content-type": "application/json", **(headers or {})},
        )
        response = connection.getresponse()
        response.read()
        return _owner(gateway, connection.sock.getsockname()[1]), response.status
    finally:
        connection.close()


@dataclass
class InFlight:
    """One request in a thread on its own connection; ``client_port`` is set once it is sent."""

    body: dict[str, object]
    client_port: int = 0
    status: int | None = None
    text: str = ""
    error: BaseException | None = None
    thread: threading.Thread | None = None

    def start(self, port: int) -> InFlight:
        self.thread = threading.Thread(target=self._call, args=(port,), daemon=True)
        self.thread.start()
        return self

    def _call(self, port: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
        try:
            connection.connect()
            self.client_port = connection.sock.getsockname()[1]  # known before the upstream sees the call
            connection.request(
                "POST",
                "/gateway/chat/invocations",
                json.dumps(self.body),
                {"content-type": "application/json"},
            )
            response = connection.getresponse()
            self.status, self.text = response.status, response.read().decode()
        except BaseException as exc:  # reported by the test, which joins the thread
            self.error = exc
        finally:
            connection.close()


def _probe(port: int) -> str:
    """What a new connection gets: ``answered <status>``, ``refused``, ``reset`` or ``no answer``
    (nothing within 1 s: accepted by the kernel, but no worker will ever take it)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n\r\n")
            head = sock.recv(64)
    except ConnectionRefusedError:
        return "refused"
    except ConnectionResetError:
        return "reset"
    except TimeoutError:
        return "no answer"
    return f"answered {head[9:12].decode()}" if head else "reset"


# ---------------------------------------------------------------- the tests


@pytest.fixture
def workers_gateway(tmp_path: Path, fake_openai: FakeOpenAI) -> Iterator[tuple[GatewayProcess, Path]]:
    config = tmp_path / "gateway.yaml"
    config.write_text(_config(fake_openai), encoding="utf-8")
    with GatewayProcess(
        config, log_dir=tmp_path, args=["--workers", "2", "--graceful-timeout", "10"]
    ) as gateway:
        yield gateway, config
    assert "Traceback" not in gateway.output, gateway.output


def _config(fake: FakeOpenAI, *, with_added_route: bool = False) -> str:
    text = (
        "routes:\n"
        "  - name: chat\n"
        "    route_type: llm/v1/chat\n"
        f"    model: {{provider: openai, name: gpt-4o-mini, config: {{openai_api_key: sk-test, "
        f"openai_api_base: '{fake.api_base}'}}}}\n"
    )
    if with_added_route:
        text += "  - name: added\n    route_type: llm/v1/chat\n    model: {provider: fake, name: fake-chat}\n"
    return text


def test_sigterm_drains_both_workers_refuses_new_connections_and_exits_0(
    workers_gateway: tuple[GatewayProcess, Path], fake_openai: FakeOpenAI
) -> None:
    gateway, _ = workers_gateway
    assert gateway.process is not None
    fake_openai.inject(Fault(delay=UPSTREAM_DELAY, chunk_delay=0.05), times=None)
    tree = _descendants(gateway.process.pid)  # the workers and multiprocessing's helper

    # Requests in flight on both workers (plain and streamed); new connections until both hold one.
    calls = [
        InFlight({**CHAT, "stream": stream}).start(gateway.port) for stream in (False, True, False, True)
    ]
    fake_openai.wait_for_requests(len(calls))
    owners = {_owner(gateway, call.client_port) for call in calls}
    if len(owners) == 1:  # the kernel gave every connection to one worker: the other takes the next
        with _paused(next(iter(owners))):
            call = InFlight(CHAT).start(gateway.port)
            calls.append(call)
            fake_openai.wait_for_requests(len(calls))
        owners.add(_owner(gateway, call.client_port))
    assert len(owners) == 2, f"every connection went to worker {owners}"

    signalled = time.monotonic()
    gateway.process.send_signal(signal.SIGTERM)
    probes: list[str] = []
    while not probes or probes[-1] != "refused":
        probes.append(_probe(gateway.port))
        assert time.monotonic() - signalled < 1.5, f"new connections still not refused: {probes}"
        time.sleep(0.02)
    assert all(call.thread and call.thread.is_alive() for call in calls), "refused only after the drain"
    # Until the parent forwards SIGTERM (it looks twice a second) a worker may still answer; a
    # connection queued when the last worker closes the socket is reset. Nothing hangs.
    assert set(probes) <= {"answered 200", "reset", "refused"}, probes

    assert gateway.process.wait(UPSTREAM_DELAY + 5) == 0, gateway.output
    assert time.monotonic() - signalled < UPSTREAM_DELAY + 3  # drained, not cut at --graceful-timeout 10
    for call in calls:
        assert call.thread is not None
        call.thread.join(5)
        assert call.error is None and call.status == 200, (call.error, call.status, call.text)
        if call.body.get("stream"):
            assert call.text.rstrip().endswith("data: [DONE]")
        else:
            assert json.loads(call.text)["candidates"][0]["message"]["content"]
    wait_until(
        lambda: all(_exited(pid) for pid in tree), 5, message=f"a process of {tree} outlived the parent"
    )


def test_config_rewrite_reaches_both_workers(
    workers_gateway: tuple[GatewayProcess, Path], fake_openai: FakeOpenAI
) -> None:
    gateway, config = workers_gateway

    # Both workers seen serving the existing route, and neither knows the new one yet.
    first, status = _post(gateway, "chat", CHAT)
    assert status == 200
    with _paused(first):  # the next connection can only go to the other worker
        second, status = _post(gateway, "chat", CHAT)
    assert status == 200 and second != first, (first, second)
    workers = {first, second}
    assert _post(gateway, "added", CHAT)[1] == 404

    config.write_text(_config(fake_openai, with_added_route=True), encoding="utf-8")
    written = time.monotonic()
    serving: dict[int, float] = {}  # worker → seconds until it first served the new route
    while len(serving) < 2:
        assert time.monotonic() - written < 6, (
            f"after 6 s only {sorted(serving)} of {sorted(workers)} reloaded"
        )
        worker, status = _post(gateway, "added", CHAT)
        assert worker in workers, "a worker was restarted; reload must happen in place"
        if worker in serving:
            assert status == 200, f"worker {worker} served the new route, then answered {status}"
        elif status == 200:
            serving[worker] = time.monotonic() - written
        else:
            assert status == 404
        old_worker, old_status = _post(gateway, "chat", CHAT)
        assert old_status == 200, "the existing route failed during the reload"
        assert old_worker in workers
        time.sleep(0.02)
    for _ in range(10):  # and then every new connection, whichever worker takes it
        assert _post(gateway, "added", CHAT)[1] == 200
    assert max(serving.values()) < 4, serving
    # Both workers reloaded; one line says so, for the whole server.
    assert gateway.output.count("reloaded (changed in the file): added: added; 1 unchanged") == 1, (
        gateway.output
    )


# ---------------------------------------------------------------- one line per change, saying who

QUERY_KEY = "gw-query-secret-5c2e"
ADMIN_KEY = "gw-admin-secret-81fa"
ADDED = {"name": "added", "route_type": "llm/v1/chat", "model": {"provider": "fake", "name": "fake-chat"}}


@pytest.fixture
def debug_gateway(tmp_path: Path, fake_openai: FakeOpenAI) -> Iterator[tuple[GatewayProcess, Path]]:
    """Two workers logging JSON at ``debug``: a worker that applies a change without logging it at
    ``info`` still writes a ``debug`` line, so the test can wait until both workers applied it."""
    config = tmp_path / "gateway.yaml"
    keys = (
        "auth:\n  keys:\n"
        "    - {name: team-a, key: $E2E_QUERY_KEY, scopes: [query]}\n"
        "    - {name: ops, key: $E2E_ADMIN_KEY, scopes: [query, admin]}\n"
    )
    config.write_text(keys + _config(fake_openai), encoding="utf-8")
    with GatewayProcess(
        config,
        log_dir=tmp_path,
        env={"E2E_QUERY_KEY": QUERY_KEY, "E2E_ADMIN_KEY": ADMIN_KEY},
        args=["--workers", "2", "--log-level", "debug", "--log-format", "json"],
    ) as gateway:
        # /health answered by one worker; a change must reach two running workers to prove anything.
        wait_until(
            lambda: gateway.stderr.count("Application startup complete.") >= 2, 10, message="both workers"
        )
        yield gateway, config
    assert "Traceback" not in gateway.output, gateway.output
    assert QUERY_KEY not in gateway.output and ADMIN_KEY not in gateway.output


def _lines(gateway: GatewayProcess, text: str) -> list[dict[str, object]]:
    """The JSON log lines whose message contains ``text``."""
    found = []
    for line in gateway.stderr.splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if text in str(record.get("message")):
                found.append(record)
    return found


def _by_level(records: list[dict[str, object]]) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """(lines at info or above, lines at debug)."""
    shown = [record for record in records if record["level"] != "DEBUG"]
    return shown, [record for record in records if record["level"] == "DEBUG"]


def _applied_by_both(gateway: GatewayProcess, text: str) -> list[dict[str, object]]:
    """Wait until two workers wrote a line containing ``text`` (at any level); those lines."""
    wait_until(
        lambda: len({record["pid"] for record in _lines(gateway, text)}) >= 2,
        8,
        message=f"two workers applying {text!r}:\n{gateway.stderr[-4000:]}",
    )
    return _lines(gateway, text)


def test_an_admin_change_is_one_line_naming_the_key(debug_gateway: tuple[GatewayProcess, Path]) -> None:
    gateway, config = debug_gateway
    admin = {"authorization": f"Bearer {ADMIN_KEY}", "content-type": "application/json"}
    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=10)
    try:
        connection.request("POST", "/api/2.0/gateway/routes/", json.dumps(ADDED), admin)
        response = connection.getresponse()
        assert response.status == 200, response.read()
        response.read()
    finally:
        connection.close()
    records = _applied_by_both(gateway, "added: added")
    # The worker that made the change saw its own write come back through its file watcher; wait
    # for that too, so that every line this change will ever cause is in the log.
    wait_until(lambda: len(_lines(gateway, " reloaded")) >= 2, 8, message="both reloads")
    records = _lines(gateway, "added: added")
    shown, quiet = _by_level(records)
    assert len(shown) == 1, shown  # was 2: the other worker's "config ... reloaded: added: added"
    line = shown[0]
    assert line["level"] == "INFO" and line["changed_by"] == "key:ops", line
    assert str(line["message"]).startswith(f"route 'added' created (saved to {config}) by key 'ops': ")
    assert quiet and all(record["pid"] != line["pid"] for record in quiet), quiet  # the other worker
    reloads, _ = _by_level(_lines(gateway, "reloaded"))
    assert reloads == [], reloads  # no "config reloaded: no route changes" from the admin worker either

    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=10)
    try:
        connection.request("DELETE", "/api/2.0/gateway/routes/added", headers=admin)
        response = connection.getresponse()
        assert response.status == 200, response.read()
        response.read()
    finally:
        connection.close()
    shown, _ = _by_level(_applied_by_both(gateway, "removed: added"))
    assert len(shown) == 1, shown
    assert " deleted (saved to " in str(shown[0]["message"]) and "by key 'ops'" in str(shown[0]["message"])
    assert shown[0]["changed_by"] == "key:ops"


def test_a_file_edit_and_a_rejected_file_are_one_line_each(
    debug_gateway: tuple[GatewayProcess, Path], fake_openai: FakeOpenAI
) -> None:
    gateway, config = debug_gateway
    keys = config.read_text(encoding="utf-8").split("routes:")[0]
    config.write_text(keys + _config(fake_openai, with_added_route=True), encoding="utf-8")
    shown, quiet = _by_level(_applied_by_both(gateway, "added: added"))
    assert len(shown) == 1 and len(quiet) == 1, (shown, quiet)  # was 2 at info
    assert shown[0]["changed_by"] == "file"
    assert str(shown[0]["message"]).startswith(
        f"config {config} reloaded (changed in the file): added: added"
    )

    config.write_text("routes: [this is not a route]\n", encoding="utf-8")
    shown, quiet = _by_level(_applied_by_both(gateway, "not reloaded"))
    assert [record["level"] for record in shown] == ["ERROR"] and len(quiet) == 1, (shown, quiet)
    # The routes in hand keep serving on both workers.
    assert _post(gateway, "added", CHAT, {"authorization": f"Bearer {QUERY_KEY}"})[1] == 200
