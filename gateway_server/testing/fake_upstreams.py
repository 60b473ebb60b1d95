"""The machinery shared by every fake upstream: routing, request recording and fault injection.

A fake upstream is a raw ASGI app that speaks one vendor's documented wire format. Vendor fakes
(:class:`~gateway_server.testing.fake_openai.FakeOpenAI`, and later ``FakeAnthropic``,
``FakeCohere``...) subclass :class:`FakeUpstream`, list their endpoints in :meth:`~FakeUpstream.routes`
and answer with pure handlers ``handler(request) -> Reply | Stream``. Everything else lives here once.

**Recording.** Every request, whether routed, unknown (404) or faulted, is appended to
``fake.requests`` as a :class:`RecordedRequest` before the answer is chosen: method, path, raw and
parsed query, case-insensitive headers, raw body, parsed JSON (``None`` when the body is not JSON)
and the path parameters of the matched route (``{"deployment": ...}``).

**Faults.** ``fake.inject(fault, times=1, path=None)`` arms a :class:`Fault` for the next ``times``
matching requests (``times=None``: every request until :meth:`~FakeUpstream.reset`); ``path`` limits
it to request paths ending with that suffix. Armed faults are consumed in the order they were
injected, so "fail the first K calls, then succeed" is ``inject(Fault.error(500), times=K)``. Kinds::

    Fault.error(429, headers={"Retry-After": "2"})   # any status; body defaults to the vendor's envelope
    Fault.rate_limited(retry_after=2)                 # the same, spelled out
    Fault.slow(1.5)                                   # wait, then answer normally
    Fault.not_json()                                  # 200 text/html
    Fault.disconnect()                                # close the connection without answering
    Fault.drop_mid_body()                             # send headers and half the body, then close
    Fault.cut_stream(after=3)                         # streams: close after 3 chunks, no [DONE]
    Fault.slow_stream(0.2)                            # streams: wait 0.2 s before each chunk
    Fault(status=503, delay=0.5)                      # fields combine

Dropping a connection needs the server's transport, which this module finds on uvicorn's ``send``
(the fakes are meant to run under :mod:`gateway_server.testing.server`); under any other server a
drop raises :class:`ConnectionDroppedError` instead, which the server turns into a broken response.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Self

import orjson
from starlette.datastructures import Headers, QueryParams

from gateway_server.testing import _asgi
from gateway_server.testing._asgi import ConnectionDroppedError
from gateway_server.testing.server import serve_in_thread

__all__ = [
    "ConnectionDroppedError",
    "FakeUpstream",
    "Fault",
    "RecordedRequest",
    "Reply",
    "Route",
    "Stream",
    "sse",
]

Drop = Literal["before_response", "mid_body"]


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request as the fake received it."""

    method: str
    path: str
    query_string: str
    query: QueryParams
    headers: Headers  # case-insensitive: request.headers["authorization"]
    body: bytes
    json: Any  # the parsed body, or None when it is not JSON
    path_params: Mapping[str, str] = field(default_factory=dict)
    raw_path: str = ""  # the path as sent, still percent-encoded (``path`` is decoded)


@dataclass(frozen=True, slots=True)
class Reply:
    """A complete answer. A ``dict``/``list`` body is sent as JSON; ``str``/``bytes`` as they are."""

    status: int = 200
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    content_type: str | None = None


@dataclass(frozen=True, slots=True)
class Stream:
    """A streamed answer: each chunk is written as it comes (the unit of chunk delays and cuts)."""

    chunks: Sequence[bytes]
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    content_type: str = "text/event-stream"


@dataclass(frozen=True, slots=True)
class Route:
    """``method`` + ``path`` template (``{name}`` matches one path segment) → handler."""

    method: str
    path: str
    handler: Callable[[RecordedRequest], Reply | Stream]


@dataclass(frozen=True, slots=True)
class Fault:
    """What to do instead of (or on top of) the normal answer. See the module docstring."""

    status: int | None = None  # answer this status instead of the normal answer
    body: Any = None  # with this body; None → the vendor's error envelope for ``status``
    headers: Mapping[str, str] = field(default_factory=dict)
    content_type: str | None = None
    delay: float = 0.0  # seconds to wait before answering
    drop: Drop | None = None  # close the connection before answering, or halfway through the body
    cut_stream_after: int | None = None  # streams only: close after this many chunks
    chunk_delay: float | None = None  # streams only: seconds to wait before each chunk

    @classmethod
    def error(
        cls, status: int, body: Any = None, *, headers: Mapping[str, str] | None = None, delay: float = 0.0
    ) -> Fault:
        return cls(status=status, body=body, headers=dict(headers or {}), delay=delay)

    @classmethod
    def rate_limited(cls, retry_after: float = 1, body: Any = None) -> Fault:
        return cls.error(429, body, headers={"Retry-After": f"{retry_after:g}"})

    @classmethod
    def slow(cls, seconds: float) -> Fault:
        return cls(delay=seconds)

    @classmethod
    def not_json(cls, body: str = "<html><body>502 Bad Gateway</body></html>", status: int = 200) -> Fault:
        return cls(status=status, body=body, content_type="text/html; charset=utf-8")

    @classmethod
    def disconnect(cls) -> Fault:
        return cls(drop="before_response")

    @classmethod
    def drop_mid_body(cls) -> Fault:
        return cls(drop="mid_body")

    @classmethod
    def cut_stream(cls, after: int) -> Fault:
        return cls(cut_stream_after=after)

    @classmethod
    def slow_stream(cls, chunk_delay: float) -> Fault:
        return cls(chunk_delay=chunk_delay)


def sse(data: Any, event: str | None = None) -> bytes:
    """One server-sent event: ``event: <event>\\n`` (if given), ``data: <data>\\n\\n``."""
    payload = data if isinstance(data, str) else orjson.dumps(data).decode()
    prefix = f"event: {event}\n" if event is not None else ""
    return f"{prefix}data: {payload}\n\n".encode()


@dataclass(slots=True)
class _Armed:
    fault: Fault
    remaining: int | None
    path: str | None


class FakeUpstream:
    """Base of the vendor fakes: an ASGI app with request recording and fault injection.

    Subclasses set ``name``, implement :meth:`routes` and may override :meth:`error_body` (the
    vendor's error envelope) and :meth:`authorize` (the vendor's credential check).
    """

    name: ClassVar[str] = "fake"

    def __init__(self, *, chunk_delay: float = 0.0, prefix: str = "") -> None:
        self.default_chunk_delay = chunk_delay
        self.chunk_delay = chunk_delay
        self.prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""  # the vendor's API path prefix
        self.url: str | None = None  # set while served by :meth:`serve`
        self._condition = threading.Condition()
        self._requests: list[RecordedRequest] = []
        self._faults: list[_Armed] = []
        self._routes = [(route.method, _compile(route.path), route.handler) for route in self.routes()]

    @property
    def api_base(self) -> str:
        """The base URL a route's ``<vendor>_api_base`` points at: ``url`` + the vendor's prefix."""
        if self.url is None:
            raise RuntimeError(f"{type(self).__name__} is not being served; use `with fake.serve():`")
        return self.url + self.prefix

    # -- for subclasses -------------------------------------------------------------------------

    def routes(self) -> Iterable[Route]:
        return ()

    def error_body(self, status: int, message: str) -> Any:
        """The vendor's JSON error envelope; used for 404/405 and for faults without a body."""
        return {"error": {"message": message, "status": status}}

    def authorize(self, request: RecordedRequest) -> Reply | None:
        """Return an error :class:`Reply` to refuse the request's credentials, ``None`` to accept."""
        return None

    def on_reset(self) -> None:
        """Hook for subclasses holding extra per-test state."""

    # -- for tests ------------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request received since the last :meth:`reset`, oldest first."""
        with self._condition:
            return list(self._requests)

    @property
    def last_request(self) -> RecordedRequest:
        with self._condition:
            if not self._requests:
                raise LookupError(f"{type(self).__name__} has received no request")
            return self._requests[-1]

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> list[RecordedRequest]:
        """Block until at least ``count`` requests were received; ``TimeoutError`` after ``timeout``."""
        with self._condition:
            if not self._condition.wait_for(lambda: len(self._requests) >= count, timeout):
                raise TimeoutError(
                    f"{type(self).__name__} received {len(self._requests)} of {count} requests "
                    f"within {timeout:g}s"
                )
            return list(self._requests)

    def inject(self, fault: Fault, *, times: int | None = 1, path: str | None = None) -> None:
        """Arm ``fault`` for the next ``times`` requests (``None``: all) whose path ends with ``path``."""
        if times is not None and times < 1:
            raise ValueError(f"times must be >= 1 or None, got {times}")
        with self._condition:
            self._faults.append(_Armed(fault, times, path))

    def clear_faults(self) -> None:
        with self._condition:
            self._faults.clear()

    def reset(self) -> None:
        """Forget recorded requests and armed faults, restore the default chunk delay."""
        with self._condition:
            self._requests.clear()
            self._faults.clear()
            self.chunk_delay = self.default_chunk_delay
            self.on_reset()

    @contextmanager
    def serve(self, host: str = "127.0.0.1", port: int = 0, **options: Any) -> Iterator[Self]:
        """Serve this fake in a thread (see :func:`serve_in_thread`); ``self.url`` is set meanwhile."""
        with serve_in_thread(self, host, port, **options) as server:
            self.url = server.url
            try:
                yield self
            finally:
                self.url = None

    # -- ASGI -----------------------------------------------------------------------------------

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await _asgi.lifespan(receive, send)
            return
        if scope["type"] != "http":
            raise RuntimeError(f"{type(self).__name__} serves HTTP only, not {scope['type']!r}")
        request, handler = self._match(scope, await _asgi.read_body(receive))
        with self._condition:
            self._requests.append(request)
            fault = self._take_fault(request.path)
            self._condition.notify_all()
        fault = fault or Fault()
        if fault.delay and not await _asgi.pause(receive, fault.delay):
            return  # the client went away while we waited
        if fault.drop == "before_response":
            await _asgi.drop(send, receive)
            return
        reply = self._answer(request, handler, fault)
        if isinstance(reply, Stream):
            await self._send_stream(reply, fault, receive, send)
        else:
            await _send_reply(reply, fault, receive, send)

    def _match(
        self, scope: dict[str, Any], body: bytes
    ) -> tuple[RecordedRequest, Callable[[RecordedRequest], Reply | Stream]]:
        path, method = scope["path"], scope["method"]
        allowed: list[str] = []
        found: tuple[dict[str, str], Any] = ({}, None)
        for route_method, pattern, handler in self._routes:
            match = pattern.fullmatch(path)
            if match is None:
                continue
            if route_method == method:
                found = (match.groupdict(), handler)
                break
            allowed.append(route_method)
        query_string = scope.get("query_string", b"").decode("latin-1")
        request = RecordedRequest(
            method=method,
            path=path,
            query_string=query_string,
            query=QueryParams(query_string),
            headers=Headers(raw=list(scope["headers"])),
            body=body,
            json=_parse_json(body),
            path_params=found[0],
            raw_path=scope.get("raw_path", b"").decode("latin-1") or path,
        )
        handler = found[1]
        if handler is None:
            handler = self._not_allowed if allowed else self._not_found
        return request, handler

    def _not_found(self, request: RecordedRequest) -> Reply:
        return Reply(404, self.error_body(404, f"Unknown path {request.method} {request.path}"))

    def _not_allowed(self, request: RecordedRequest) -> Reply:
        return Reply(405, self.error_body(405, f"Method {request.method} not allowed on {request.path}"))

    def _take_fault(self, path: str) -> Fault | None:
        for index, armed in enumerate(self._faults):
            if armed.path is not None and not path.endswith(armed.path):
                continue
            if armed.remaining is not None:
                armed.remaining -= 1
                if armed.remaining == 0:
                    del self._faults[index]
            return armed.fault
        return None

    def _answer(
        self, request: RecordedRequest, handler: Callable[[RecordedRequest], Reply | Stream], fault: Fault
    ) -> Reply | Stream:
        if fault.status is not None:
            body = fault.body
            if body is None:
                body = self.error_body(fault.status, f"Injected fault: status {fault.status}")
            return Reply(fault.status, body, fault.headers, fault.content_type)
        return self.authorize(request) or handler(request)

    async def _send_stream(self, stream: Stream, fault: Fault, receive: Any, send: Any) -> None:
        chunk_delay = fault.chunk_delay if fault.chunk_delay is not None else self.chunk_delay
        cut_after = fault.cut_stream_after
        if cut_after is None and fault.drop == "mid_body":
            cut_after = 1
        headers = [(b"content-type", stream.content_type.encode()), (b"cache-control", b"no-cache")]
        headers += _asgi.encode_headers(stream.headers)
        await send({"type": "http.response.start", "status": stream.status, "headers": headers})
        for sent, chunk in enumerate(stream.chunks):
            if sent == cut_after:
                await _asgi.drop(send, receive)
                return
            if chunk_delay and not await _asgi.pause(receive, chunk_delay):
                return
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def _compile(template: str) -> re.Pattern[str]:
    pattern, position = "", 0
    for match in re.finditer(r"\{(\w+)\}", template):
        pattern += re.escape(template[position : match.start()]) + f"(?P<{match[1]}>[^/]+)"
        position = match.end()
    return re.compile(pattern + re.escape(template[position:]))


def _parse_json(body: bytes) -> Any:
    if not body:
        return None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def _encode_body(reply: Reply) -> tuple[bytes, str]:
    """The body's bytes and content type: ``reply.content_type``, a Content-Type header, or by body type."""
    given = reply.content_type or next(
        (value for name, value in reply.headers.items() if name.lower() == "content-type"), None
    )
    body = reply.body
    if body is None:
        return b"", given or "application/json"
    if isinstance(body, bytes):
        return body, given or "application/octet-stream"
    if isinstance(body, str):
        return body.encode(), given or "text/plain; charset=utf-8"
    return orjson.dumps(body), given or "application/json"


async def _send_reply(reply: Reply, fault: Fault, receive: Any, send: Any) -> None:
    body, content_type = _encode_body(reply)
    headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
    headers += _asgi.encode_headers({k: v for k, v in reply.headers.items() if k.lower() != "content-type"})
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    if fault.drop == "mid_body":
        await send({"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True})
        await _asgi.drop(send, receive)
        return
    await send({"type": "http.response.body", "body": body, "more_body": False})
