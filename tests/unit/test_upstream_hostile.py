"""The upstream pool against upstreams that misbehave: dribbled bytes, resets, bombs, floods, stalls.

Every server here is a raw asyncio server on 127.0.0.1 (or ::1) writing exact bytes; every test
runs under a 10 s deadline. The comparison with h11 (a strict, well-kept HTTP/1.1 implementation)
feeds both the same raw answers and expects the same status, headers and body.
"""

from __future__ import annotations

import asyncio
import gzip
import socket
import struct
import time
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

import h11
import pytest

from gateway_server.upstream.connect import HAPPY_EYEBALLS_DELAY, Resolver, check_proxy, proxy_refusal
from gateway_server.upstream.pool import ConnectError, ConnectionBroken, ConnectionPool

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def run(test: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(asyncio.wait_for(test(), 10))


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return head + await reader.readexactly(length)


class Server:
    """``handler(reader, writer)`` per connection; counts connections and the most open at once."""

    def __init__(self, handler: Handler, host: str = "127.0.0.1") -> None:
        self.handler = handler
        self.host = host
        self.connections = 0
        self.open = 0
        self.most_open = 0
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> Server:
        self.server = await asyncio.start_server(self._handle, self.host, 0)
        port = self.server.sockets[0].getsockname()[1]
        self.url = f"http://{'[::1]' if ':' in self.host else self.host}:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            await self.handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.open -= 1
            writer.close()


def answering(*answers: bytes, dribble: bool = False, then: str = "close") -> Handler:
    """Answer each request on a connection with the next of ``answers``; then close or reset."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for answer in answers:
            await read_request(reader)
            if dribble:
                writer.transport.get_extra_info("socket").setsockopt(
                    socket.IPPROTO_TCP, socket.TCP_NODELAY, 1
                )
                for index in range(len(answer)):
                    writer.write(answer[index : index + 1])
                    await writer.drain()
                    await asyncio.sleep(0)
            else:
                writer.write(answer)
                await writer.drain()
        if then == "reset":
            await asyncio.sleep(0.05)  # the bytes are on their way; then a reset instead of a close
            sock = writer.transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        elif then == "hold":
            await reader.read()

    return handler


def gzipped(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def chunked(*pieces: bytes) -> bytes:
    return (
        b"".join(b"%x;ext=1\r\n%s\r\n" % (len(piece), piece) for piece in pieces)
        + b"0\r\nX-Trailer: t\r\n\r\n"
    )


# ------------------------------------------------------------------ the same answers as h11 reads them

ANSWERS = {
    "content-length": b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n{"a":1}',
    "chunked+extensions+trailer": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    + chunked(b"hel", b"lo"),
    "close-delimited": b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nuntil the end",
    "http/1.0": b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
    "repeated headers": b"HTTP/1.1 200 OK\r\nX-A: 1\r\nX-A: 2\r\nContent-Length: 0\r\n\r\n",
    "103 early hints": b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 1\r\n\r\nx",
    "status 429 with body": b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 2\r\nContent-Length: 4\r\n\r\nslow",
    "no reason phrase": b"HTTP/1.1 200 \r\nContent-Length: 1\r\n\r\n!",
    "obs-fold-free spaces": b"HTTP/1.1 200 OK\r\nX-Space:   padded value  \r\nContent-Length: 0\r\n\r\n",
    "gzip chunked": b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
    + chunked(gzipped(b"x" * 5000)[:40], gzipped(b"x" * 5000)[40:]),
}


def h11_reading(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
    client.send(h11.EndOfMessage())
    client.receive_data(raw)
    client.receive_data(b"")  # the server closes after the answer
    headers: dict[str, str] = {}
    body = b""
    status = 0
    while True:
        event = client.next_event()
        if isinstance(event, h11.InformationalResponse):
            continue
        if isinstance(event, h11.Response):
            status = event.status_code
            for name, value in event.headers:
                key = name.decode().lower()
                headers[key] = value.decode() if key not in headers else f"{headers[key]}, {value.decode()}"
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
            break
    if headers.get("content-encoding") == "gzip":
        body = gzip.decompress(body)
    return status, headers, body


@pytest.mark.parametrize("dribble", [False, True], ids=["whole", "byte-by-byte"])
@pytest.mark.parametrize("name", list(ANSWERS))
def test_the_pool_reads_what_h11_reads(name: str, dribble: bool) -> None:
    raw = ANSWERS[name]
    expected = h11_reading(raw)

    async def test() -> None:
        async with Server(answering(raw, dribble=dribble)) as server:
            pool = ConnectionPool()
            status, headers, body = await pool.request("GET", server.url, {}, None, 5)
            await pool.close()
        assert (status, dict(headers), body) == expected

    run(test)


def test_a_dribbled_gzip_stream_arrives_whole() -> None:
    events = b"".join(b'data: {"n": %d}\n\n' % n for n in range(50))
    raw = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(
        *[gzipped(events)[i : i + 7] for i in range(0, len(gzipped(events)), 7)]
    )

    async def test() -> None:
        async with Server(answering(raw, dribble=True)) as server:
            pool = ConnectionPool()
            response = await pool.send("POST", server.url, {}, b"{}", 5)
            try:
                received = b"".join([piece async for piece in response.iter_chunks(5)])
            finally:
                response.release()
            await pool.close()
        assert received == events

    run(test)


# ------------------------------------------------------------------ truncation and corruption


@pytest.mark.parametrize("stream", [False, True], ids=["request", "stream"])
def test_a_close_delimited_body_cut_by_a_reset_is_an_error(stream: bool) -> None:
    raw = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{"choices": []}'

    async def test() -> None:
        async with Server(answering(raw, then="reset")) as server:
            pool = ConnectionPool()
            with pytest.raises(ConnectionBroken, match="reset"):
                if stream:
                    response = await pool.send("POST", server.url, {}, b"{}", 5)
                    try:
                        async for _ in response.iter_chunks(5):
                            pass
                    finally:
                        response.release()
                else:
                    await pool.request("POST", server.url, {}, b"{}", 5)
            await pool.close()

    run(test)


@pytest.mark.parametrize(
    "body",
    [b"this is not gzip at all", gzipped(b"x" * 10000)[:-12]],
    ids=["corrupt", "cut-short"],
)
def test_a_corrupt_or_cut_gzip_body_is_an_error(body: bytes) -> None:
    raw = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)

    async def test() -> None:
        async with Server(answering(raw)) as server:
            pool = ConnectionPool()
            with pytest.raises(ConnectionBroken, match="gzip"):
                await pool.request("GET", server.url, {}, None, 5)
            await pool.close()

    run(test)


@pytest.mark.parametrize("encoding", ["gzip", "identity"])
def test_a_body_over_the_cap_is_refused_after_decompression(encoding: str) -> None:
    plain = b"\0" * (16 * 1024 * 1024)  # 16 MiB: with gzip, 16 KiB on the wire
    body = gzipped(plain) if encoding == "gzip" else plain
    raw = b"HTTP/1.1 200 OK\r\nContent-Encoding: %s\r\nContent-Length: %d\r\n\r\n%s" % (
        encoding.encode(),
        len(body),
        body,
    )

    async def test() -> None:
        async with Server(answering(raw, then="hold")) as server:
            pool = ConnectionPool(max_body_bytes=1024 * 1024)
            with pytest.raises(ConnectionBroken, match="larger than 1048576 bytes"):
                await pool.request("GET", server.url, {}, None, 5)
            with pytest.raises(ConnectionBroken, match="larger than"):  # nor a stream's one read
                response = await pool.send("GET", server.url, {}, None, 5)
                try:
                    await response.read()
                finally:
                    response.release()
            await pool.close()

    run(test)


@pytest.mark.parametrize(
    ("head", "match"),
    [
        ("".join(f"X-H{n}: v\r\n" for n in range(150)), "more than 100 header lines"),
        ("X-Big: " + "v" * (100 * 1024) + "\r\n", "headers are larger than 65536 bytes"),
    ],
    ids=["count", "size"],
)
def test_heads_over_the_limits_are_refused(head: str, match: str) -> None:
    raw = f"HTTP/1.1 200 OK\r\n{head}Content-Length: 0\r\n\r\n".encode()

    async def test() -> None:
        async with Server(answering(raw)) as server:
            pool = ConnectionPool()
            with pytest.raises(ConnectionBroken, match=match):
                await pool.request("GET", server.url, {}, None, 5)
            await pool.close()

    run(test)


# ------------------------------------------------------------------ connections


def test_keep_alive_timeout_from_the_server_is_honoured() -> None:
    answer = b"HTTP/1.1 200 OK\r\nKeep-Alive: timeout=1.5\r\nContent-Length: 1\r\n\r\nk"

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            writer.write(answer)
            await writer.drain()

    async def test() -> None:
        async with Server(handler) as server:
            pool = ConnectionPool()
            await pool.request("GET", server.url, {}, None, 5)
            await pool.request("GET", server.url, {}, None, 5)
            assert server.connections == 1  # reused within the server's timeout (less a second)
            await asyncio.sleep(0.6)
            await pool.request("GET", server.url, {}, None, 5)
            assert server.connections == 2  # 0.5 s of it were ours to use: not reused after
            await pool.close()

    run(test)


def test_idle_connections_expire_within_five_seconds_by_default() -> None:
    from gateway_server.upstream.pool import KEEPALIVE_SECONDS

    assert KEEPALIVE_SECONDS <= 5.0  # well before common server idle timeouts (nginx 75 s, uvicorn 5 s)

    async def test() -> None:
        async with Server(answering(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", then="hold")) as server:
            pool = ConnectionPool(keepalive=0.2)
            await pool.request("GET", server.url, {}, None, 5)
            await asyncio.sleep(0.3)
            await pool.request("GET", server.url, {}, None, 1)
            assert server.connections == 2  # the idle one had expired: not reused
            await pool.close()

    run(test)


def test_concurrent_calls_to_one_origin_wait_in_line() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            await asyncio.sleep(0.1)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()

    async def test() -> None:
        async with Server(handler) as server:
            pool = ConnectionPool(max_per_origin=2)
            results = await asyncio.gather(*(pool.request("GET", server.url, {}, None, 5) for _ in range(8)))
            assert [body for _, _, body in results] == [b"ok"] * 8
            assert server.most_open == 2 and server.connections == 2
            # A call that cannot get a connection within its timeout says so.
            busy = [asyncio.ensure_future(pool.request("GET", server.url, {}, None, 5)) for _ in range(2)]
            await asyncio.sleep(0.02)  # both have their connection
            with pytest.raises(TimeoutError, match="no connection to the upstream came free"):
                await pool.request("GET", server.url, {}, None, 0.05)
            await asyncio.gather(*busy)
            assert (await pool.request("GET", server.url, {}, None, 5))[2] == b"ok"  # the slots came back
            await pool.close()

    run(test)


def test_close_fails_calls_in_flight_and_in_line_at_once() -> None:
    async def test() -> None:
        async with Server(answering(b"", then="hold")) as server:
            pool = ConnectionPool(max_per_origin=1)
            flying = asyncio.ensure_future(pool.request("POST", server.url, {}, b"{}", 30))
            waiting = asyncio.ensure_future(pool.request("POST", server.url, {}, b"{}", 30))
            await asyncio.sleep(0.2)
            started = time.monotonic()
            await pool.close()
            for call in (flying, waiting):
                with pytest.raises(ConnectionBroken, match="pool was closed"):
                    await call
            assert time.monotonic() - started < 1

    run(test)


def test_request_targets_are_percent_encoded() -> None:
    seen: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append((await read_request(reader)).split(b"\r\n")[0])
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()

    async def test() -> None:
        async with Server(handler) as server:
            pool = ConnectionPool()
            await pool.request("GET", f"{server.url}/models/my model/é?q=a b&ok=%20", {}, None, 5)
            await pool.close()
        assert seen == [b"GET /models/my%20model/%C3%A9?q=a%20b&ok=%20 HTTP/1.1"]

    run(test)


def test_an_ipv6_upstream_gets_a_bracketed_host() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    seen: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await read_request(reader))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()

    async def test() -> None:
        try:
            server = await Server(handler, host="::1").__aenter__()
        except OSError:
            pytest.skip("::1 is not configured")
        try:
            pool = ConnectionPool()
            await pool.request("GET", f"{server.url}/v1", {}, None, 5)
            await pool.close()
        finally:
            await server.__aexit__()
        port = server.url.rsplit(":", 1)[1]
        assert f"\r\nHost: [::1]:{port}\r\n".encode() in seen[0]

    run(test)


def test_a_stalled_connect_times_out() -> None:
    """A listener whose accept queue is full drops new SYNs: the connect hangs until our timeout."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(8):  # fill the accept queue (never accepted)
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        time.sleep(0.1)

        async def test() -> None:
            pool = ConnectionPool()
            started = time.monotonic()
            with pytest.raises((TimeoutError, ConnectError)):
                await pool.request("GET", f"http://127.0.0.1:{port}/", {}, None, 0.5)
            assert time.monotonic() - started < 2
            await pool.close()

        run(test)
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


def test_happy_eyeballs_falls_through_to_the_address_that_answers() -> None:
    async def test() -> None:
        async with Server(answering(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")) as server:
            port = int(server.url.rsplit(":", 1)[1])
            pool = ConnectionPool()
            loop = asyncio.get_running_loop()
            # A name with a dead address first (::1 or 127.0.0.2: nothing listens there) and the live one.
            dead = (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.2", port))
            live = (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))
            calls = []

            async def getaddrinfo(host: str, port_: int, **_: Any) -> list[Any]:
                calls.append(host)
                return [dead, live]

            loop.getaddrinfo = getaddrinfo  # type: ignore[method-assign]
            started = time.monotonic()
            assert (await pool.request("GET", f"http://upstream.test:{port}/", {}, None, 5))[2] == b"ok"
            assert time.monotonic() - started < HAPPY_EYEBALLS_DELAY + 1
            pool._idle.clear()  # a fresh connection: the name comes from the cache
            assert (await pool.request("GET", f"http://upstream.test:{port}/", {}, None, 5))[2] == b"ok"
            assert calls == ["upstream.test"]
            await pool.close()

    run(test)


def test_the_resolver_cache_expires() -> None:
    async def test() -> None:
        loop = asyncio.get_running_loop()
        calls: list[str] = []

        async def getaddrinfo(host: str, port: int, **_: Any) -> list[Any]:
            calls.append(host)
            await asyncio.sleep(0.01)
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

        loop.getaddrinfo = getaddrinfo  # type: ignore[method-assign]
        resolver = Resolver(loop, ttl=0.05)
        together = await asyncio.gather(*(resolver.resolve("upstream.test", 80) for _ in range(10)))
        assert calls == ["upstream.test"] and all(infos == together[0] for infos in together)
        assert await resolver.resolve("upstream.test", 80) is together[0]  # cached
        await asyncio.sleep(0.06)
        await resolver.resolve("upstream.test", 80)
        assert calls == ["upstream.test"] * 2  # expired: looked up again
        assert (await resolver.resolve("::1", 443))[0][4] == ("::1", 443, 0, 0)  # literals: no lookup
        assert calls == ["upstream.test"] * 2

    run(test)


def test_https_proxy_is_refused_not_bypassed(monkeypatch: pytest.MonkeyPatch) -> None:
    environ = {"HTTPS_PROXY": "http://proxy.internal:3128", "NO_PROXY": "exempt.example,.internal"}
    assert "HTTPS_PROXY is set" in (proxy_refusal("api.openai.com", environ) or "")
    assert proxy_refusal("exempt.example", environ) is None
    assert proxy_refusal("api.openai.com", {}) is None
    with pytest.raises(OSError, match="HTTPS_PROXY"):
        check_proxy(["http://plain.example/v1", "https://api.openai.com/v1"], environ)
    check_proxy(["http://plain.example/v1"], environ)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")

    async def test() -> None:
        pool = ConnectionPool()
        with pytest.raises(ConnectError, match="HTTPS_PROXY is set"):
            await pool.request("POST", "https://api.openai.com/v1/chat/completions", {}, b"{}", 5)
        await pool.close()

    run(test)


def test_deflate_and_zlib_bodies_still_decode() -> None:
    plain = b'{"data": "' + b"z" * 1000 + b'"}'
    for body in (zlib.compress(plain), zlib.compress(plain)[2:-4]):  # zlib-wrapped and raw deflate
        raw = b"HTTP/1.1 200 OK\r\nContent-Encoding: deflate\r\nContent-Length: %d\r\n\r\n%s" % (
            len(body),
            body,
        )

        async def test(raw: bytes = raw) -> None:
            async with Server(answering(raw)) as server:
                pool = ConnectionPool()
                assert (await pool.request("GET", server.url, {}, None, 5))[2] == plain
                await pool.close()

        run(test)


def test_the_server_refuses_to_start_when_https_proxy_covers_an_upstream(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from gateway_server.app import create_app
    from gateway_server.config import parse_config

    config = parse_config(
        """
routes:
  - name: chat
    route_type: llm/v1/chat
    model: {provider: openai, name: gpt-4o-mini, config: {openai_api_key: sk-x}}
"""
    )
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    sent: list[dict[str, Any]] = []

    async def test() -> None:
        messages = iter([{"type": "lifespan.startup"}])

        async def receive() -> dict[str, Any]:
            return next(messages)

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await create_app(config)({"type": "lifespan"}, receive, send)

    run(test)
    assert sent[0]["type"] == "lifespan.startup.failed"
    assert "HTTPS_PROXY is set" in sent[0]["message"] and "api.openai.com" in sent[0]["message"]
    monkeypatch.setenv("NO_PROXY", "api.openai.com")
    sent.clear()

    async def starts() -> None:
        messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])

        async def receive() -> dict[str, Any]:
            return next(messages)

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await create_app(config)({"type": "lifespan"}, receive, send)

    run(starts)
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
