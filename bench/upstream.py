"""A fast fake OpenAI-compatible upstream for the benchmark.

Raw asyncio ``Protocol`` + ``httptools`` (on uvloop when installed), HTTP/1.1 keep-alive, 127.0.0.1 only.
Every answer is pre-encoded at start-up, so a request costs one parse and one ``transport.write``.

Routes (``/v1`` prefix optional):

* ``POST /v1/chat/completions`` -> a fixed ``chat.completion`` with ``usage`` (~1 KB);
  with ``"stream": true`` -> ``text/event-stream`` of ``chat.completion.chunk`` events: the first delta
  carries ``role``, the last chunk carries ``usage``, then ``data: [DONE]``.
* ``POST /v1/completions`` -> a fixed ``text_completion`` (streams too, as ``text_completion`` chunks).
* ``POST /v1/embeddings`` -> a ``list`` of ``embedding`` objects, one per input.
* ``GET /health`` -> ``{"status":"OK"}``; ``GET /__stats`` -> request counters (for validity checks).
* ``--fail-every N`` (N > 0): every Nth POST is answered ``500`` with an OpenAI-style ``server_error``
  body instead (streams too, before any event), for soak runs that need some upstream failures.

Run: ``python -m bench.upstream --port 8001 [--chunks 32] [--chunk-delay-ms 5] [--fail-every N]``; it prints
``READY <port>`` on stdout once listening and stops on SIGTERM/SIGINT or after ``--max-seconds``.
From Python: ``start_upstream(...)`` (a pinned subprocess) or ``await serve(...)`` (in-process).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httptools

try:
    import orjson

    _loads = orjson.loads

    def _dumps(obj: object) -> bytes:
        return orjson.dumps(obj)
except ImportError:  # pragma: no cover - orjson is a core dependency
    import json

    _loads = json.loads

    def _dumps(obj: object) -> bytes:
        return json.dumps(obj, separators=(",", ":")).encode()


from bench._proc import pin_command, read_line, require_loopback, terminate

CREATED = 1_731_000_000
CHAT_MODEL = "gpt-4o-mini-2024-07-18"
EMBED_MODEL = "text-embedding-3-small"
ANSWER = (
    "A gateway sits between your applications and the model providers. It keeps the provider keys in "
    "one place, gives every team the same request shape, applies rate limits and retries, and records "
    "what each call cost. Measured on its own, a good gateway should add well under a millisecond to "
    "a request and never become the reason a service slows down."
)
PROMPT_TOKENS = 21
COMPLETION_TOKENS = 72


@dataclass
class UpstreamOptions:
    chunks: int = 16  # content chunks per stream (plus the role chunk and the usage chunk)
    chunk_delay_ms: float = 0.0  # pause between stream events
    first_delay_ms: float = 0.0  # pause before the first stream event (simulated time to first token)
    delay_ms: float = 0.0  # pause before a non-streamed answer
    embedding_dim: int = 256
    fail_every: int = 0  # > 0: answer every Nth POST with a 500 (injected upstream failure)


@dataclass
class UpstreamStats:
    requests: int = 0
    streams: int = 0
    errors: int = 0
    failed: int = 0  # 500s injected by fail_every
    by_path: dict[str, int] = field(default_factory=dict)


def _response(body: bytes, status: str = "200 OK", ctype: bytes = b"application/json") -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: ".encode()
        + ctype
        + f"\r\nContent-Length: {len(body)}\r\nx-request-id: req_bench\r\n\r\n".encode()
    )
    return head + body


def _chunked(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nCache-Control: no-cache\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)
STREAM_END = b"0\r\n\r\n"


def _usage() -> dict:
    return {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": COMPLETION_TOKENS,
        "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
    }


def chat_completion() -> dict:
    return {
        "id": "chatcmpl-bench0000000000000000000001",
        "object": "chat.completion",
        "created": CREATED,
        "model": CHAT_MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": ANSWER, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": _usage(),
        "service_tier": "default",
        "system_fingerprint": "fp_bench0001",
    }


def text_completion() -> dict:
    return {
        "id": "cmpl-bench0000000000000000000001",
        "object": "text_completion",
        "created": CREATED,
        "model": "gpt-3.5-turbo-instruct",
        "choices": [{"index": 0, "text": ANSWER, "logprobs": None, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": PROMPT_TOKENS,
            "completion_tokens": COMPLETION_TOKENS,
            "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
        },
    }


def embeddings(count: int, dim: int) -> dict:
    vector = [round(math.sin(i * 0.7) * 0.05, 6) for i in range(dim)]
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": vector} for i in range(count)],
        "model": EMBED_MODEL,
        "usage": {"prompt_tokens": 8 * count, "total_tokens": 8 * count},
    }


def _split(text: str, parts: int) -> list[str]:
    words = text.split(" ")
    parts = max(1, parts)
    out = []
    for i in range(parts):
        chunk = words[len(words) * i // parts : len(words) * (i + 1) // parts]
        out.append((" " if i else "") + " ".join(chunk))
    return out


def stream_events(kind: str, chunks: int) -> list[bytes]:
    """The SSE events of one streamed answer, each already framed as one HTTP chunk."""
    events: list[dict] = []
    if kind == "chat":
        base = {"id": "chatcmpl-bench-stream", "object": "chat.completion.chunk", "created": CREATED}
        base |= {"model": CHAT_MODEL, "system_fingerprint": "fp_bench0001"}
        first = {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
        events.append(base | {"choices": [first]})
        for piece in _split(ANSWER, chunks):
            events.append(
                base | {"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
            )
        events.append(base | {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        events.append(base | {"choices": [], "usage": _usage()})
    else:
        base = {"id": "cmpl-bench-stream", "object": "text_completion", "created": CREATED}
        base |= {"model": "gpt-3.5-turbo-instruct"}
        for piece in _split(ANSWER, chunks):
            events.append(base | {"choices": [{"index": 0, "text": piece, "finish_reason": None}]})
        events.append(base | {"choices": [{"index": 0, "text": "", "finish_reason": "stop"}]})
        events.append(base | {"choices": [], "usage": text_completion()["usage"]})
    framed = [_chunked(b"data: " + _dumps(e) + b"\n\n") for e in events]
    framed.append(_chunked(b"data: [DONE]\n\n"))
    return framed


class Answers:
    """Every response, pre-encoded once."""

    def __init__(self, opts: UpstreamOptions) -> None:
        self.opts = opts
        self.chat = _response(_dumps(chat_completion()))
        self.completion = _response(_dumps(text_completion()))
        self.embedding_by_count: dict[int, bytes] = {}
        self.health = _response(b'{"status":"OK"}')
        self.not_found = _response(
            b'{"error":{"message":"not found","type":"invalid_request_error"}}', "404 Not Found"
        )
        self.bad_request = _response(
            b'{"error":{"message":"body is not JSON","type":"invalid_request_error"}}', "400 Bad Request"
        )
        self.server_error = _response(
            b'{"error":{"message":"bench: injected upstream failure","type":"server_error"}}',
            "500 Internal Server Error",
        )
        self.chat_stream = stream_events("chat", opts.chunks)
        self.completion_stream = stream_events("completions", opts.chunks)

    def embedding(self, count: int) -> bytes:
        count = max(1, min(count, 2048))
        if count not in self.embedding_by_count:
            self.embedding_by_count[count] = _response(_dumps(embeddings(count, self.opts.embedding_dim)))
        return self.embedding_by_count[count]


def _wants_stream(body: bytes) -> bool:
    if b'"stream"' not in body:
        return False
    try:
        return _loads(body).get("stream") is True
    except (ValueError, AttributeError):
        return False


def _embedding_count(body: bytes) -> int:
    try:
        data = _loads(body).get("input")
    except (ValueError, AttributeError):
        return 1
    return len(data) if isinstance(data, list) and data and not isinstance(data[0], int) else 1


class UpstreamProtocol(asyncio.Protocol):
    """One client connection. Answers in order; a delayed answer holds back the ones behind it."""

    def __init__(self, server: UpstreamServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.body: list[bytes] = []
        self.tail: asyncio.Task | None = None  # last delayed answer still being written

    # -- asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.server.stats.errors += 1
            if self.transport is not None:
                self.transport.write(self.server.answers.bad_request)
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.tail is not None:
            self.tail.cancel()
        self.transport = None

    # -- httptools callbacks
    def on_message_begin(self) -> None:
        self.url = b""
        self.body = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        keep_alive = self.parser.should_keep_alive()
        parts = self.server.answer(self.parser.get_method(), self.url, b"".join(self.body))
        if self.tail is None and isinstance(parts, bytes):
            self._write(parts, keep_alive)
            return
        self.tail = asyncio.get_running_loop().create_task(self._write_later(self.tail, parts, keep_alive))

    # -- writing
    def _write(self, data: bytes, keep_alive: bool) -> None:
        if self.transport is None:
            return
        self.transport.write(data)
        if not keep_alive:
            self.transport.close()

    async def _write_later(
        self, before: asyncio.Task | None, parts: bytes | Delayed, keep_alive: bool
    ) -> None:
        if before is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await before
        if isinstance(parts, bytes):
            self._write(parts, keep_alive)
        else:
            # each step is due at an absolute time (start + sum of the delays so far), so timer lateness
            # does not accumulate over a stream: a paced stream always lasts about the same
            loop = asyncio.get_running_loop()
            due = loop.time()
            for delay, data in parts.steps:
                due += delay
                if due > loop.time():
                    await asyncio.sleep(due - loop.time())
                if self.transport is None:
                    return
                self.transport.write(data)
            self._write(b"", keep_alive)
        if self.tail is asyncio.current_task():
            self.tail = None


@dataclass
class Delayed:
    steps: list[tuple[float, bytes]]  # (seconds to wait first, bytes to write)


class UpstreamServer:
    def __init__(self, opts: UpstreamOptions | None = None) -> None:
        self.opts = opts or UpstreamOptions()
        self.answers = Answers(self.opts)
        self.stats = UpstreamStats()

    def _count(self, path: str) -> None:
        self.stats.requests += 1
        self.stats.by_path[path] = self.stats.by_path.get(path, 0) + 1

    def answer(self, method: bytes, url: bytes, body: bytes) -> bytes | Delayed:
        path = url.split(b"?", 1)[0].decode("latin-1")
        if path.startswith("/v1/"):
            path = path[3:]
        if method == b"GET":
            if path in ("/health", "/"):
                return self.answers.health
            if path == "/__stats":
                return _response(_dumps(self.stats.__dict__))
            return self.answers.not_found
        self._count(path)
        if self.opts.fail_every > 0 and self.stats.requests % self.opts.fail_every == 0:
            self.stats.failed += 1
            return self.answers.server_error
        if path == "/chat/completions":
            if _wants_stream(body):
                return self._stream(self.answers.chat_stream)
            return self._plain(self.answers.chat)
        if path == "/completions":
            if _wants_stream(body):
                return self._stream(self.answers.completion_stream)
            return self._plain(self.answers.completion)
        if path == "/embeddings":
            return self._plain(self.answers.embedding(_embedding_count(body)))
        self.stats.errors += 1
        return self.answers.not_found

    def _plain(self, data: bytes) -> bytes | Delayed:
        if self.opts.delay_ms > 0:
            return Delayed([(self.opts.delay_ms / 1000, data)])
        return data

    def _stream(self, events: list[bytes]) -> bytes | Delayed:
        self.stats.streams += 1
        gap = self.opts.chunk_delay_ms / 1000
        first = self.opts.first_delay_ms / 1000
        if gap <= 0 and first <= 0:
            return STREAM_HEAD + b"".join(events) + STREAM_END
        steps = [(first, STREAM_HEAD + events[0])]
        steps += [(gap, e) for e in events[1:]]
        steps.append((0.0, STREAM_END))
        return Delayed(steps)


async def serve(
    host: str = "127.0.0.1",
    port: int = 0,
    opts: UpstreamOptions | None = None,
    *,
    ready: Callable[[int], None] | None = None,
    stop: asyncio.Event | None = None,
    max_seconds: float = 3600.0,
) -> UpstreamStats:
    """Serve until ``stop`` is set or ``max_seconds`` pass. Calls ``ready(port)`` once listening."""
    server = UpstreamServer(opts)
    loop = asyncio.get_running_loop()
    srv = await loop.create_server(
        lambda: UpstreamProtocol(server), require_loopback(host), port, backlog=1024
    )
    bound = srv.sockets[0].getsockname()[1]
    if ready is not None:
        ready(bound)
    stop = stop or asyncio.Event()
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=max_seconds)
    finally:
        srv.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(srv.wait_closed(), timeout=2)
    return server.stats


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop when installed (the benchmark's tools should be as cheap as possible), else asyncio's."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


# -- running it as a separate, pinned process


@dataclass
class UpstreamHandle:
    proc: subprocess.Popen
    port: int

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        terminate(self.proc, grace=5)

    def __enter__(self) -> UpstreamHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_upstream(
    opts: UpstreamOptions | None = None, *, port: int = 0, cpu: int | None = 1, max_seconds: float = 3600.0
) -> UpstreamHandle:
    """Start ``python -m bench.upstream`` (pinned to ``cpu`` with taskset when possible) and wait until ready."""
    opts = opts or UpstreamOptions()
    cmd = [sys.executable, "-m", "bench.upstream", "--port", str(port), "--max-seconds", str(max_seconds)]
    cmd += ["--chunks", str(opts.chunks), "--chunk-delay-ms", str(opts.chunk_delay_ms)]
    cmd += ["--first-delay-ms", str(opts.first_delay_ms), "--delay-ms", str(opts.delay_ms)]
    cmd += ["--embedding-dim", str(opts.embedding_dim), "--fail-every", str(opts.fail_every)]
    proc = subprocess.Popen(pin_command(cmd, cpu), stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        line = read_line(proc, "READY ", timeout=20)
        if line is None:
            raise RuntimeError(f"fake upstream did not start (exit code {proc.poll()})")
        return UpstreamHandle(proc, int(line.split()[1]))
    except BaseException:
        terminate(proc, grace=2)
        raise


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.upstream", description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1", help="loopback only (default 127.0.0.1)")
    ap.add_argument("--port", type=int, default=8001, help="0 picks a free port (printed as READY <port>)")
    ap.add_argument("--chunks", type=int, default=16, help="content chunks per streamed answer")
    ap.add_argument("--chunk-delay-ms", type=float, default=0.0, help="pause between streamed events")
    ap.add_argument("--first-delay-ms", type=float, default=0.0, help="pause before the first streamed event")
    ap.add_argument("--delay-ms", type=float, default=0.0, help="pause before a non-streamed answer")
    ap.add_argument("--embedding-dim", type=int, default=256)
    ap.add_argument("--fail-every", type=int, default=0, help="answer every Nth POST with a 500 (0: never)")
    ap.add_argument("--max-seconds", type=float, default=3600.0, help="stop by itself after this long")
    args = ap.parse_args(argv)
    opts = UpstreamOptions(
        chunks=args.chunks,
        chunk_delay_ms=args.chunk_delay_ms,
        first_delay_ms=args.first_delay_ms,
        delay_ms=args.delay_ms,
        embedding_dim=args.embedding_dim,
        fail_every=args.fail_every,
    )

    async def run() -> UpstreamStats:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)

        def ready(port: int) -> None:
            print(f"READY {port}", flush=True)

        return await serve(args.host, args.port, opts, ready=ready, stop=stop, max_seconds=args.max_seconds)

    started = time.perf_counter()
    loop = new_event_loop()
    try:
        stats = loop.run_until_complete(run())
    finally:
        loop.close()
    took = time.perf_counter() - started
    print(f"upstream: {stats.requests} requests ({stats.streams} streams) in {took:.1f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
