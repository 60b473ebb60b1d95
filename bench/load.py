"""A cheap HTTP/1.1 load generator for the benchmark.

Raw asyncio ``Protocol`` connections (uvloop when installed) with ``httptools`` parsing the responses, so
Content-Length and chunked bodies are both read properly. N keep-alive connections each send one
pre-encoded POST at a time (closed loop). A run is bounded by a request count *and* by time, and a
watchdog aborts any request that takes longer than ``timeout``.

Measured per request: latency in ns (send to last byte); in streaming mode also the time to the first
``data:`` event. Reported: rps, percentiles, errors by kind, and the generator's own CPU time, so a report
can show the generator was far from saturating its core.

CLI: ``python -m bench.load --port 8001 --path /v1/chat/completions -c 64 -n 20000 -d 10 [--stream]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field

import httptools

from bench._proc import require_loopback

CHAT_BODY = {
    "model": "gpt-4o-mini",
    "messages": [
        {"role": "system", "content": "You are a concise assistant."},
        {"role": "user", "content": "In two sentences, what does an LLM gateway do for a team?"},
    ],
    "temperature": 0.2,
    "max_tokens": 128,
}


def build_request(
    host: str, port: int, path: str, body: bytes, headers: dict[str, str] | None = None
) -> bytes:
    """One complete HTTP/1.1 POST, encoded once and sent as is for every request."""
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "User-Agent: gatewayctl-bench",
        "Accept: */*",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
    ]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def percentile(sorted_values: array | list, p: float) -> float | None:
    """Nearest-rank percentile of already sorted values (None when empty)."""
    if not sorted_values:
        return None
    k = min(len(sorted_values) - 1, max(0, round(p / 100 * (len(sorted_values) - 1))))
    return float(sorted_values[k])


@dataclass
class LoadResult:
    ok: int = 0
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    status: dict[int, int] = field(default_factory=dict)
    elapsed_s: float = 0.0
    cpu_s: float = 0.0
    latencies_ns: array = field(default_factory=lambda: array("q"))
    first_event_ns: array = field(default_factory=lambda: array("q"))
    events: int = 0
    sample_status: int | None = None
    sample_headers: dict[str, str] = field(default_factory=dict)
    sample_body: bytes = b""
    header_values: list[bytes] = field(default_factory=list)

    @property
    def rps(self) -> float:
        return self.ok / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def cpu_share(self) -> float:
        """The generator's own CPU time as a share of one core over the run (1.0 = a full core)."""
        return self.cpu_s / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def error(self, kind: str) -> None:
        self.errors += 1
        self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1

    def summary(self) -> dict:
        lat = sorted(self.latencies_ns)
        first = sorted(self.first_event_ns)
        out = {
            "ok": self.ok,
            "errors": self.errors,
            "error_kinds": self.error_kinds,
            "status": {str(k): v for k, v in sorted(self.status.items())},
            "elapsed_s": round(self.elapsed_s, 4),
            "rps": round(self.rps, 1),
            "loadgen_cpu_s": round(self.cpu_s, 4),
            "loadgen_cpu_share": round(self.cpu_share, 4),
            "loadgen_cpu_us_per_request": round(self.cpu_s / self.ok * 1e6, 2) if self.ok else None,
        }
        for p in (50, 90, 99, 99.9):
            out[f"p{p}_ms"] = _ms(percentile(lat, p))
        out["mean_ms"] = _ms(sum(lat) / len(lat)) if lat else None
        out["max_ms"] = _ms(lat[-1]) if lat else None
        if first:
            out["events"] = self.events
            for p in (50, 99):
                out[f"first_event_p{p}_ms"] = _ms(percentile(first, p))
        return out


def _ms(ns: float | None) -> float | None:
    return None if ns is None else round(ns / 1e6, 4)


class _Conn(asyncio.Protocol):
    """One keep-alive client connection, one request in flight at a time."""

    def __init__(self, stream: bool, capture_header: bytes | None) -> None:
        self.stream = stream
        self.capture_header = capture_header
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future | None = None
        self.sent_ns = 0  # 0 = idle
        self.first_ns = 0
        self.events = 0
        self.keep_body = False
        self.body: list[bytes] = []
        self.headers: dict[str, str] | None = None
        self.captured: bytes | None = None
        self.tail = b""
        self.closed = False

    # -- asyncio
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:  # pragma: no cover - never asked for
            self._fail("upgrade")
        except httptools.HttpParserError as exc:
            self._fail(f"parse: {exc}")

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail("connection closed")

    def _fail(self, why: str) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError(why))

    # -- request
    def request(self, data: bytes, keep_body: bool) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        self.waiter = loop.create_future()
        self.first_ns = 0
        self.events = 0
        self.tail = b""
        self.keep_body = keep_body
        self.body = []
        self.headers = {} if keep_body else None
        self.captured = None
        self.sent_ns = time.perf_counter_ns()
        assert self.transport is not None
        self.transport.write(data)
        return self.waiter

    # -- httptools
    def on_header(self, name: bytes, value: bytes) -> None:
        if self.headers is not None:
            self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")
        if self.capture_header is not None and name.lower() == self.capture_header:
            self.captured = value

    def on_body(self, body: bytes) -> None:
        if self.keep_body:
            self.body.append(body)
        if self.stream:
            seen = self.tail + body
            n = seen.count(b"data:")
            if n and not self.first_ns:
                self.first_ns = time.perf_counter_ns()
            self.events += n
            self.tail = body[-4:]

    def on_message_complete(self) -> None:
        end = time.perf_counter_ns()
        waiter, self.waiter = self.waiter, None
        sent, self.sent_ns = self.sent_ns, 0
        if not self.parser.should_keep_alive():
            self.closed = True
            if self.transport is not None:
                self.transport.close()
        if waiter is not None and not waiter.done():
            waiter.set_result((self.parser.get_status_code(), sent, end))


@dataclass
class LoadSpec:
    port: int
    path: str
    body: bytes
    host: str = "127.0.0.1"
    headers: dict[str, str] = field(default_factory=dict)
    concurrency: int = 1
    requests: int = 1000  # upper bound on measured requests
    duration: float = 10.0  # upper bound on measured time, seconds
    warmup: int = 1  # unmeasured requests per connection before the clock starts
    stream: bool = False
    timeout: float = 10.0  # per request
    capture_header: str | None = None  # record this response header's value for every request


Hook = Callable[[], None]


class _Run:
    def __init__(self, spec: LoadSpec, on_start: Hook | None, on_stop: Hook | None) -> None:
        self.spec = spec
        self.on_start, self.on_stop = on_start, on_stop
        self.request = build_request(spec.host, spec.port, spec.path, spec.body, spec.headers)
        self.result = LoadResult()
        self.remaining = spec.requests
        self.deadline = 0.0
        self.conns: list[_Conn] = []
        self.capture = spec.capture_header.lower().encode() if spec.capture_header else None
        self.sampled = False

    async def connect(self) -> _Conn:
        loop = asyncio.get_running_loop()
        _, conn = await asyncio.wait_for(
            loop.create_connection(
                lambda: _Conn(self.spec.stream, self.capture),
                require_loopback(self.spec.host),
                self.spec.port,
            ),
            timeout=self.spec.timeout,
        )
        self.conns.append(conn)
        return conn

    async def warm(self) -> _Conn | None:
        try:
            conn = await self.connect()
            for _ in range(self.spec.warmup):
                await conn.request(self.request, False)
                if conn.closed:
                    conn = await self.connect()
            return conn
        except (OSError, ConnectionError, TimeoutError) as exc:
            self.result.error(f"warm-up: {type(exc).__name__}: {exc}")
            return None

    async def worker(self, conn: _Conn | None) -> None:
        res = self.result
        reconnects = 0
        while self.remaining > 0 and time.perf_counter() < self.deadline:
            if conn is None or conn.closed:
                if reconnects > 100:
                    res.error("too many reconnects")
                    return
                reconnects += 1
                try:
                    conn = await self.connect()
                except (OSError, TimeoutError) as exc:
                    res.error(f"connect: {type(exc).__name__}")
                    await asyncio.sleep(0.05)
                    continue
            self.remaining -= 1
            keep = not self.sampled
            self.sampled = True
            try:
                status, sent, end = await conn.request(self.request, keep)
            except ConnectionError as exc:
                res.error(str(exc))
                continue
            self.record(conn, status, sent, end, keep)

    def record(self, conn: _Conn, status: int, sent: int, end: int, keep: bool) -> None:
        res = self.result
        res.status[status] = res.status.get(status, 0) + 1
        if keep:
            res.sample_status, res.sample_headers, res.sample_body = (
                status,
                conn.headers or {},
                b"".join(conn.body),
            )
        if conn.captured is not None:
            res.header_values.append(conn.captured)
        if status != 200:
            res.error(f"HTTP {status}")
            return
        res.ok += 1
        res.latencies_ns.append(end - sent)
        if self.spec.stream:
            res.events += conn.events
            if conn.first_ns:
                res.first_event_ns.append(conn.first_ns - sent)
            else:
                res.error("stream without a data: event")

    async def watchdog(self) -> None:
        """Abort requests stuck longer than ``timeout``; stops when the run's deadline has passed."""
        limit_ns = int(self.spec.timeout * 1e9)
        while time.perf_counter() < self.deadline + self.spec.timeout + 1:
            await asyncio.sleep(0.1)
            now = time.perf_counter_ns()
            for conn in self.conns:
                if conn.sent_ns and now - conn.sent_ns > limit_ns:
                    conn._fail("timeout")

    async def run(self) -> LoadResult:
        spec = self.spec
        self.deadline = time.perf_counter() + spec.duration + spec.timeout * 2  # warm-up gets a bound too
        watchdog = asyncio.ensure_future(self.watchdog())
        try:
            conns = await asyncio.gather(*(self.warm() for _ in range(spec.concurrency)))
            if self.on_start is not None:
                self.on_start()
            cpu0, t0 = time.process_time(), time.perf_counter()
            self.deadline = t0 + spec.duration
            await asyncio.gather(*(self.worker(c) for c in conns))
            self.result.elapsed_s = time.perf_counter() - t0
            self.result.cpu_s = time.process_time() - cpu0
            if self.on_stop is not None:
                self.on_stop()
        finally:
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watchdog
            for conn in self.conns:
                if conn.transport is not None:
                    conn.transport.close()
        return self.result


async def run_load(spec: LoadSpec, on_start: Hook | None = None, on_stop: Hook | None = None) -> LoadResult:
    """Run one bounded load (``spec.requests`` requests or ``spec.duration`` seconds, whichever ends first).

    ``on_start`` / ``on_stop`` are called right at the edges of the measured window (after warm-up), e.g.
    to read a server's CPU time for exactly the measured requests.
    """
    return await _Run(spec, on_start, on_stop).run()


def run_load_sync(spec: LoadSpec, on_start: Hook | None = None, on_stop: Hook | None = None) -> LoadResult:
    """``run_load`` on a fresh uvloop (or asyncio) event loop."""
    from bench.upstream import new_event_loop

    loop = new_event_loop()
    try:
        return loop.run_until_complete(run_load(spec, on_start, on_stop))
    finally:
        loop.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1", help="loopback only")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--path", default="/v1/chat/completions")
    ap.add_argument("--body", help="request JSON (default: a small chat request)")
    ap.add_argument("--header", action="append", default=[], help="'Name: value', repeatable")
    ap.add_argument("-c", "--concurrency", type=int, default=1)
    ap.add_argument("-n", "--requests", type=int, default=1000, help="at most this many measured requests")
    ap.add_argument("-d", "--duration", type=float, default=10.0, help="at most this many seconds")
    ap.add_argument("--warmup", type=int, default=1, help="unmeasured requests per connection")
    ap.add_argument("--stream", action="store_true", help='add "stream": true and time the first data: event')
    ap.add_argument("--timeout", type=float, default=10.0)
    args = ap.parse_args(argv)
    body = json.loads(args.body) if args.body else dict(CHAT_BODY)
    if args.stream:
        body["stream"] = True
    headers = dict(h.split(":", 1) for h in args.header)
    spec = LoadSpec(
        port=args.port,
        path=args.path,
        body=json.dumps(body).encode(),
        host=args.host,
        headers={k.strip(): v.strip() for k, v in headers.items()},
        concurrency=args.concurrency,
        requests=args.requests,
        duration=args.duration,
        warmup=args.warmup,
        stream=args.stream,
        timeout=args.timeout,
    )
    result = run_load_sync(spec)
    print(json.dumps(result.summary(), indent=2))
    return 0 if result.errors == 0 and result.ok > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
