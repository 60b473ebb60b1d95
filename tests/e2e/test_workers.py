"""``gatewayctl serve CONFIG --workers 2`` as a real process tree: SIGTERM drains every worker and
refuses new connections, and a rewritten config file reaches both workers.

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


def _post(gateway: GatewayProcess, route: str, body: dict[str, object]) -> tuple[int, int]:
    """POST on a new connection; (the worker that answered, status). Keep-alive: the worker still
    holds the connection when it is looked up, then the connection is closed."""
    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=10)
    try:
        connection.request(
            "POST", f"/gateway/{route}/invocations", json.dumps(body), {"content-type": "application/json"}
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
    assert gateway.output.count("reloaded: added: added") == 2, gateway.output
