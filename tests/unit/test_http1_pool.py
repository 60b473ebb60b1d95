"""The upstream HTTP/1.1 pool against raw servers on 127.0.0.1 that write exact bytes.

Each test serves scripted answers from an asyncio server and checks what the pool sent, how it
framed and decoded the answer, and when it kept, reused or closed a connection.
"""

from __future__ import annotations

import asyncio
import gzip
import shutil
import ssl
import subprocess
import zlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from gateway_server.upstream.pool import ConnectError, ConnectionBroken, ConnectionPool, UnsendableRequest

Answer = Callable[[bytes], bytes | None]  # request bytes -> raw answer (None: close without one)


class RawServer:
    """Answers each request on a connection with ``answer(request)``; counts connections and
    records every request's bytes and whether the peer closed."""

    def __init__(self, answer: Answer, *, close_after: bool = False) -> None:
        self.answer = answer
        self.close_after = close_after
        self.connections = 0
        self.requests: list[bytes] = []
        self.peer_closed = asyncio.Event()
        self.server: asyncio.Server | None = None
        self.url = ""
        self.handlers: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> RawServer:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        for handler in self.handlers:
            handler.cancel()
        await asyncio.gather(*self.handlers, return_exceptions=True)
        await self.server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.handlers.add(asyncio.current_task())  # type: ignore[arg-type]
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                answer = self.answer(request)
                if answer is None:
                    break
                writer.write(answer)
                await writer.drain()
                if self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            self.peer_closed.set()
        finally:
            writer.close()
            await asyncio.gather(writer.wait_closed(), return_exceptions=True)


def ok(body: bytes, *headers: str) -> bytes:
    head = "".join(f"{h}\r\n" for h in headers)
    return f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n{head}\r\n".encode() + body


def run(test: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(asyncio.wait_for(test(), 10))


def test_request_bytes_and_keep_alive_reuse() -> None:
    async def test() -> None:
        async with RawServer(lambda _: ok(b'{"a":1}', "Content-Type: application/json")) as server:
            pool = ConnectionPool()
            for _ in range(3):
                status, headers, body = await pool.request(
                    "POST", f"{server.url}/v1/chat?x=1", {"Authorization": "Bearer k"}, b"{}"
                )
                assert (status, body) == (200, b'{"a":1}')
                assert headers["Content-Type"] == headers.get("content-type") == "application/json"
            await pool.close()
        assert server.connections == 1
        port = server.url.rsplit(":", 1)[1]
        assert (
            server.requests[0]
            == (
                f"POST /v1/chat?x=1 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer k\r\n"
                "Content-Length: 2\r\nAccept: */*\r\nAccept-Encoding: gzip, deflate\r\n\r\n{}"
            ).encode()
        )

    run(test)


def test_connection_close_and_http_1_0_are_not_reused() -> None:
    answers = [ok(b"1", "Connection: close"), b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n2", ok(b"3")]

    async def test() -> None:
        async with RawServer(lambda _: answers.pop(0)) as server:
            pool = ConnectionPool()
            bodies = [(await pool.request("GET", server.url, {}, None))[2] for _ in range(3)]
            await pool.close()
        assert bodies == [b"1", b"2", b"3"] and server.connections == 3

    run(test)


def test_chunked_and_close_delimited_bodies() -> None:
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    until_close = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it"

    async def test() -> None:
        async with RawServer(lambda _: chunked) as server:
            pool = ConnectionPool()
            assert (await pool.request("GET", server.url, {}, None))[2] == b"abcde"
            assert (await pool.request("GET", server.url, {}, None))[2] == b"abcde"
            assert server.connections == 1
        async with RawServer(lambda _: until_close, close_after=True) as server:
            assert (await pool.request("GET", server.url, {}, None))[2] == b"all of it"
            await pool.close()

    run(test)


@pytest.mark.parametrize(
    ("encoding", "encode"),
    [
        ("gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", lambda data: zlib.compress(data)[2:-4]),  # raw deflate, as some servers send
    ],
)
def test_compressed_answers_are_decoded(encoding: str, encode: Callable[[bytes], bytes]) -> None:
    text = b'{"embedding": [' + b", ".join(b"0.125" for _ in range(2000)) + b"]}"

    async def test() -> None:
        async with RawServer(lambda _: ok(encode(text), f"Content-Encoding: {encoding}")) as server:
            pool = ConnectionPool()
            assert (await pool.request("GET", server.url, {}, None))[2] == text
            await pool.close()

    run(test)


def test_an_idle_connection_the_server_closed_is_not_reused() -> None:
    async def test() -> None:
        async with RawServer(lambda _: ok(b"x"), close_after=True) as server:
            pool = ConnectionPool()
            # The answer says keep-alive, then the server closes the idle connection.
            assert (await pool.request("GET", server.url, {}, None))[2] == b"x"
            await asyncio.sleep(0.05)
            assert (await pool.request("GET", server.url, {}, None))[2] == b"x"
            await pool.close()
        assert server.connections == 2

    run(test)


def test_a_connection_closed_without_an_answer_is_broken_and_not_resent() -> None:
    async def test() -> None:
        async with RawServer(lambda _: None) as server:
            pool = ConnectionPool()
            with pytest.raises(ConnectionBroken, match="closed the connection"):
                await pool.request("POST", server.url, {}, b"{}")
            await pool.close()
        assert len(server.requests) == 1  # an LLM call is never sent twice behind the caller's back

    run(test)


def test_a_body_cut_short_is_broken() -> None:
    async def test() -> None:
        cut = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this"
        async with RawServer(lambda _: cut, close_after=True) as server:
            pool = ConnectionPool()
            with pytest.raises(ConnectionBroken):
                await pool.request("GET", server.url, {}, None)
            await pool.close()

    run(test)


def test_garbage_is_broken() -> None:
    async def test() -> None:
        async with RawServer(lambda _: b"SSH-2.0-OpenSSH_9.2\r\n\r\n") as server:
            pool = ConnectionPool()
            with pytest.raises(ConnectionBroken, match=r"not valid HTTP/1\.1"):
                await pool.request("GET", server.url, {}, None)
            await pool.close()

    run(test)


def test_refused_connection_and_bad_requests() -> None:
    async def test() -> None:
        async with RawServer(lambda _: ok(b"")) as server:
            url = server.url
        pool = ConnectionPool()
        with pytest.raises(ConnectError):
            await pool.request("GET", url, {}, None)  # the server is gone: nothing listens there
        with pytest.raises(UnsendableRequest, match="line break"):
            await pool.request("GET", url, {"X-Key": "a\r\nX-Injected: 1"}, None)
        with pytest.raises(UnsendableRequest, match="not an http"):
            await pool.request("GET", "ftp://127.0.0.1/x", {}, None)
        await pool.close()

    run(test)


def test_streamed_body_arrives_in_pieces_and_a_stalled_read_times_out() -> None:
    async def test() -> None:
        releases = [asyncio.Event(), asyncio.Event()]  # one per connection, in order

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            release = releases.pop(0)
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
            await writer.drain()
            await release.wait()
            writer.write(b"6\r\nsecond\r\n0\r\n\r\n")
            await writer.drain()
            await reader.read()  # until the client hangs up
            writer.close()
            await asyncio.gather(writer.wait_closed(), return_exceptions=True)

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        first_release, second_release = releases
        pool = ConnectionPool()
        response = await pool.send("GET", url, {}, None)
        pieces = response.iter_chunks(read_timeout=0.2)
        assert await anext(pieces) == b"first"
        with pytest.raises(TimeoutError):
            await anext(pieces)  # nothing more within 0.2 s
        response.release()  # an unfinished answer: the connection is closed, not pooled
        first_release.set()

        response = await pool.send("GET", url, {}, None)
        pieces = response.iter_chunks(read_timeout=2)
        assert await anext(pieces) == b"first"  # handed over before the rest exists
        second_release.set()
        assert [piece async for piece in pieces] == [b"second"]
        response.release()
        await pool.close()
        server.close()
        await server.wait_closed()

    run(test)


def test_cancelling_an_exchange_closes_its_connection() -> None:
    async def test() -> None:
        async with RawServer(lambda _: b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf") as server:
            pool = ConnectionPool()
            task = asyncio.ensure_future(pool.request("GET", server.url, {}, None))
            await asyncio.sleep(0.1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await asyncio.wait_for(server.peer_closed.wait(), 2)  # the server sees us hang up
            await pool.close()

    run(test)


def test_a_large_streamed_body_is_read_whole_through_back_pressure() -> None:
    big = bytes(range(256)) * 8192  # 2 MiB, well over the pool's read-ahead limit

    async def test() -> None:
        async with RawServer(lambda _: ok(big)) as server:
            pool = ConnectionPool()
            response = await pool.send("GET", server.url, {}, None)
            got = bytearray()
            async for piece in response.iter_chunks():
                got += piece
                await asyncio.sleep(0)  # a slow reader
            response.release()
            assert bytes(got) == big
            assert (await pool.request("GET", server.url, {}, None))[2] == big
            await pool.close()
        assert server.connections == 1

    run(test)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("the TLS test needs the openssl command (Debian package openssl)")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def test_tls_with_a_trusted_certificate_and_a_wrong_name(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate

    async def test() -> None:
        server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_context.load_cert_chain(cert, key)

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while True:
                    await reader.readuntil(b"\r\n\r\n")
                    writer.write(ok(b"secure"))
                    await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
                writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_context)
        port = server.sockets[0].getsockname()[1]
        trusting = ssl.create_default_context(cafile=str(cert))
        pool = ConnectionPool(ssl_context=trusting)
        assert (await pool.request("GET", f"https://localhost:{port}/", {}, None))[2] == b"secure"
        with pytest.raises(ConnectError):  # the certificate does not name 127.0.0.1
            await pool.request("GET", f"https://127.0.0.1:{port}/", {}, None)
        await pool.close()
        untrusting = ConnectionPool()  # the system store does not know our self-signed certificate
        with pytest.raises(ConnectError):
            await untrusting.request("GET", f"https://localhost:{port}/", {}, None)
        await untrusting.close()
        server.close()

    run(test)


def test_one_timeout_covers_the_whole_exchange() -> None:
    async def test() -> None:
        stalled = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf"  # the rest never comes
        async with RawServer(lambda _: stalled) as server:
            pool = ConnectionPool()
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(TimeoutError):
                await pool.request("GET", server.url, {}, None, timeout=0.3)
            assert 0.29 <= loop.time() - started < 1.0
            await asyncio.wait_for(server.peer_closed.wait(), 2)  # a timed-out exchange hangs up
            await pool.close()

    run(test)


def test_an_informational_answer_before_the_real_one_is_skipped() -> None:
    early_hints = b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"

    async def test() -> None:
        async with RawServer(lambda _: early_hints + ok(b"real", "X-Real: yes")) as server:
            pool = ConnectionPool()
            for _ in range(2):  # and the connection stays usable
                status, headers, body = await pool.request("GET", server.url, {}, None)
                assert (status, body, headers.get("x-real"), "link" in headers) == (
                    200,
                    b"real",
                    "yes",
                    False,
                )
            await pool.close()
        assert server.connections == 1

    run(test)


def test_headers_the_adapter_sets_are_not_doubled() -> None:
    """A signed request (Bedrock's SigV4 covers Accept and Host) must go out exactly as signed."""

    async def test() -> None:
        async with RawServer(lambda _: ok(b"")) as server:
            pool = ConnectionPool()
            given = {"Host": "bedrock-runtime.example", "Accept": "application/vnd.amazon.eventstream"}
            await pool.request("POST", server.url, given, b"{}")
            await pool.close()
        head = server.requests[0].split(b"\r\n\r\n")[0].lower()
        assert head.count(b"\r\nhost:") == 1 and b"host: bedrock-runtime.example" in head
        assert head.count(b"\r\naccept:") == 1 and b"accept: application/vnd.amazon.eventstream" in head
        assert b"accept-encoding: gzip, deflate" in head

    run(test)
