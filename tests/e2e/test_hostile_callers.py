"""A caller with no key, or a slow or greedy one, cannot make the server hold memory, sockets or time.

One real ``gatewayctl serve`` process with small limits on its command line (so every bound is
reached in a fraction of a second), driven with raw sockets: a body is never sent when a test only
declares it, and every read has a deadline, so a server that waits for more (today's behaviour
before these bounds) fails the test instead of hanging it.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import yaml

from gateway_server.testing.process import GatewayProcess

ADMIN_KEY = "hostile-admin-key-0123456789"
LIMITS = {
    "--max-header-bytes": "8192",
    "--max-headers": "30",
    "--header-timeout": "1",
    "--body-timeout": "1",
    "--keep-alive-timeout": "1",
    "--limit-concurrency": "12",
}
MAX_BODY = 64 * 1024


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    workdir = tmp_path_factory.mktemp("hostile")
    config = {
        "server": {"max_request_bytes": MAX_BODY},
        "auth": {"keys": [{"name": "ops", "key": ADMIN_KEY, "scopes": ["query", "admin"]}]},
        "routes": [
            {
                "name": "chat",
                "route_type": "llm/v1/chat",
                "model": {"provider": "fake", "name": "m", "config": {}},
            }
        ],
    }
    path = Path(workdir) / "gateway.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    args = [item for pair in LIMITS.items() for item in pair]
    with GatewayProcess(path, log_dir=workdir, name="hostile", args=args) as process:
        yield process


def _connect(gateway: GatewayProcess, timeout: float = 5.0) -> socket.socket:
    return socket.create_connection((gateway.host, gateway.port), timeout=timeout)


def _answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One whole response (Content-Length framed), read before the socket's timeout."""
    data = b""
    while b"\r\n\r\n" not in data:
        piece = sock.recv(65536)
        assert piece, f"closed without an answer; got {data!r}"
        data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        piece = sock.recv(65536)
        assert piece, "closed in the middle of the body"
        body += piece
    return int(lines[0].split()[1]), headers, body


def _closed(sock: socket.socket) -> bool:
    """True when the server closed the connection (EOF or reset) before the socket's timeout."""
    try:
        while True:
            if not sock.recv(65536):
                return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def _envelope(body: bytes, headers: dict[str, str] | None = None) -> dict:
    """The error envelope; with ``headers``, also its request id, the same in the body and header."""
    payload = orjson.loads(body)
    assert set(payload) == {"error", "detail"} and payload["error"]["message"]
    if headers is not None:
        assert payload["error"]["request_id"] == headers["x-request-id"], (headers, payload)
    return payload


@pytest.mark.parametrize("path", ["/api/2.0/gateway/routes/", "/api/2.0/endpoints/"])
def test_route_creation_without_a_key_is_refused_before_the_body(gateway: GatewayProcess, path: str) -> None:
    with _connect(gateway, timeout=3) as sock:
        # 400 MB declared, not one byte sent: the answer must not wait for the body.
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Content-Length: 400000000\r\n\r\n".encode()
        )
        status, headers, body = _answer(sock)
        assert status == 401 and headers["connection"] == "close"
        assert "API key" in _envelope(body, headers)["detail"]


def test_a_declared_body_over_the_cap_is_413_at_once_on_every_path(gateway: GatewayProcess) -> None:
    for path in ("/api/2.0/gateway/routes/", "/gateway/chat/invocations", "/no/such/path", "/health"):
        with _connect(gateway, timeout=3) as sock:
            sock.sendall(
                f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN_KEY}\r\n"
                f"Content-Length: {MAX_BODY + 1}\r\n\r\n".encode()
            )
            status, headers, body = _answer(sock)
            assert status == 413, path
            assert str(MAX_BODY) in _envelope(body, headers)["detail"]
            assert headers["connection"] == "close"


def test_a_chunked_body_over_the_cap_is_413_on_the_admin_path(gateway: GatewayProcess) -> None:
    with _connect(gateway) as sock:
        sock.sendall(
            f"POST /api/2.0/gateway/routes/ HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN_KEY}\r\n"
            "Transfer-Encoding: chunked\r\n\r\n".encode()
        )
        chunk = b"x" * 16384
        status = None
        try:
            for _ in range(2 * MAX_BODY // len(chunk)):
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        except (BrokenPipeError, ConnectionResetError):
            pass
        status, _, body = _answer(sock)
        assert status == 413
        _envelope(body)


def test_a_huge_header_is_431_and_closes(gateway: GatewayProcess) -> None:
    with _connect(gateway) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ")
        try:  # a 1 MiB value, in pieces, never finished: the server must not keep reading it
            for _ in range(64):
                sock.sendall(b"a" * 16384)
        except (BrokenPipeError, ConnectionResetError):
            pass
        status, headers, body = _answer(sock)
        assert status == 431 and headers["connection"] == "close"
        assert "8192 bytes" in _envelope(body, headers)["detail"]  # no request read: a fresh id


def test_a_malformed_request_is_400_in_the_envelope_with_a_request_id(gateway: GatewayProcess) -> None:
    with _connect(gateway) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        status, headers, body = _answer(sock)
        assert status == 400 and headers["connection"] == "close"
        assert "Invalid HTTP request" in _envelope(body, headers)["detail"]


def test_too_many_headers_is_431(gateway: GatewayProcess) -> None:
    with _connect(gateway) as sock:
        lines = "".join(f"X-H{index}: v\r\n" for index in range(40))
        sock.sendall(f"GET /health HTTP/1.1\r\nHost: x\r\n{lines}\r\n".encode())
        status, _, body = _answer(sock)
        assert status == 431 and "30 header lines" in _envelope(body)["detail"]


def test_headers_within_the_limits_are_served(gateway: GatewayProcess) -> None:
    with _connect(gateway) as sock:
        lines = "".join(f"X-H{index}: {'v' * 100}\r\n" for index in range(25))
        sock.sendall(f"GET /health HTTP/1.1\r\nHost: x\r\n{lines}\r\n".encode())
        assert _answer(sock)[0] == 200


def test_a_connection_that_sends_nothing_is_closed(gateway: GatewayProcess) -> None:
    with _connect(gateway, timeout=5) as sock:
        started = time.monotonic()
        assert _closed(sock), "an idle new connection was held open"
        assert time.monotonic() - started < 4


def test_slow_headers_get_408_and_a_close(gateway: GatewayProcess) -> None:
    with _connect(gateway, timeout=5) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        status, _, body = _answer(sock)
        assert status == 408 and "headers" in _envelope(body)["detail"]
        assert time.monotonic() - started < 4 and _closed(sock)


def test_a_slow_body_gets_408(gateway: GatewayProcess) -> None:
    with _connect(gateway, timeout=5) as sock:
        sock.sendall(
            b"POST /gateway/chat/invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + ADMIN_KEY.encode() + b'\r\nContent-Length: 100\r\n\r\n{"messages"'
        )
        status, _, body = _answer(sock)
        assert status == 408 and "body" in _envelope(body)["detail"]
        assert _closed(sock)


def test_an_idle_kept_alive_connection_is_closed(gateway: GatewayProcess) -> None:
    with _connect(gateway, timeout=5) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _answer(sock)[0] == 200
        started = time.monotonic()
        assert _closed(sock) and time.monotonic() - started < 4


def test_connections_beyond_the_concurrency_cap_get_503(gateway: GatewayProcess) -> None:
    held = []
    try:
        for _ in range(12):  # the cap: each holds an unfinished head (closed after 1 s)
            sock = _connect(gateway)
            sock.sendall(b"GET /health HTTP/1.1\r\n")
            held.append(sock)
        with _connect(gateway) as extra:
            status, headers, body = _answer(extra)
            assert status == 503 and headers["retry-after"] == "1"
            _envelope(body)
    finally:
        for sock in held:
            sock.close()
    # Once they are gone, the server answers again.
    deadline = time.monotonic() + 5
    while True:
        with _connect(gateway) as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            if _answer(sock)[0] == 200:
                break
        assert time.monotonic() < deadline, "the server did not recover after the connections closed"
