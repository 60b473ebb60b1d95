"""The in-process transport: upstreams that are ASGI apps called inside the process, no socket.

The ``fake`` provider's upstream is one (:func:`fake_upstream`, answering OpenAI's wire format at
:data:`FAKE_ORIGIN`), so the fake goes through the same client, errors and stream parsing as every
real provider, with no adapter-mode branch anywhere. Tests can mount the fake upstreams of
``gateway_server/testing/`` (ASGI apps too) at any origin and run without sockets.

The app gets one ``http.request`` message with the whole body, then ``http.disconnect`` once the
answer is released. Bounded like the pool: ``timeout`` covers the whole exchange of ``request`` and
the head of ``send``; ``read_timeout`` each wait for more of a streamed body.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import orjson

from gateway_server.providers.base import origin_of
from gateway_server.providers.fake import FAKE_ORIGIN, answer, answer_stream, read_fake_config
from gateway_server.routes import RouteType
from gateway_server.upstream.transport import ConnectError, ConnectionBroken, Headers, StreamedResponse

__all__ = ["FAKE_ORIGIN", "InProcessTransport", "fake_upstream"]

ASGIApp = Callable[[dict[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]

_PATHS = {
    "/v1/chat/completions": RouteType.CHAT,
    "/v1/completions": RouteType.COMPLETIONS,
    "/v1/embeddings": RouteType.EMBEDDINGS,
}
_JSON = [(b"content-type", b"application/json")]


async def fake_upstream(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The ``fake`` provider's upstream: OpenAI's wire format, answers from ``providers/fake.py``."""
    message = await receive()
    route_type = _PATHS.get(scope["path"])
    status, body = 404, {"error": {"message": f"Unknown path {scope['path']}"}}
    if route_type is not None:
        request = orjson.loads(message.get("body") or b"{}")
        config = read_fake_config(scope["headers"])
        try:
            if request.get("stream"):
                chunks = answer_stream(route_type, request, config)
                await send({"type": "http.response.start", "status": 200, "headers": _SSE})
                data = b"".join(b"data: " + orjson.dumps(chunk) + b"\n\n" for chunk in chunks)
                await send({"type": "http.response.body", "body": data + b"data: [DONE]\n\n"})
                return
            status, body = 200, answer(route_type, request, config)
        except ValueError as exc:  # what a real provider answers 400 to
            status, body = 400, {"error": {"message": str(exc), "type": "invalid_request_error"}}
    await send({"type": "http.response.start", "status": status, "headers": _JSON})
    await send({"type": "http.response.body", "body": orjson.dumps(body)})


_SSE = [(b"content-type", b"text/event-stream")]


class InProcessTransport:
    """An :class:`~gateway_server.upstream.transport.UpstreamTransport` over ASGI apps, by origin."""

    def __init__(self, apps: Mapping[str, ASGIApp] | None = None) -> None:
        self.apps: dict[str, ASGIApp] = {FAKE_ORIGIN: fake_upstream, **(apps or {})}

    async def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | None,
        timeout: float | None = None,
    ) -> tuple[int, Headers, bytes]:
        async with asyncio.timeout(timeout):
            response = await self._start(method, url, headers, body)
            try:
                return response.status, response.headers, await response.read()
            finally:
                response.release()

    async def send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | None,
        timeout: float | None = None,
    ) -> StreamedResponse:
        async with asyncio.timeout(timeout):
            return await self._start(method, url, headers, body)

    async def close(self) -> None:
        return None

    async def _start(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes | None
    ) -> _Response:
        app = self.apps.get(origin_of(url))
        if app is None:
            raise ConnectError(f"no in-process upstream at {origin_of(url)}")
        parts = urlsplit(url)
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": parts.scheme,
            "path": parts.path or "/",
            "raw_path": (parts.path or "/").encode(),
            "query_string": parts.query.encode(),
            "headers": [(name.lower().encode(), value.encode("latin-1")) for name, value in headers.items()],
            "server": (parts.hostname or "", parts.port or 80),
            "client": ("127.0.0.1", 0),
        }
        response = _Response(app, scope, body or b"")
        try:
            await response.started()
        except BaseException:
            response.release()
            raise
        return response


class _Response:
    """One app call: its messages arrive on a queue as the app sends them."""

    __slots__ = ("_body", "_done", "_messages", "_released", "_task", "headers", "status")

    def __init__(self, app: ASGIApp, scope: dict[str, Any], body: bytes) -> None:
        self._body = body
        self._messages: asyncio.Queue[dict[str, Any] | BaseException | None] = asyncio.Queue()
        self._released = asyncio.Event()
        self._done = False
        self.status = 0
        self.headers = Headers()
        self._task = asyncio.ensure_future(self._run(app, scope))

    async def _run(self, app: ASGIApp, scope: dict[str, Any]) -> None:
        sent_body = False

        async def receive() -> dict[str, Any]:
            nonlocal sent_body
            if not sent_body:
                sent_body = True
                return {"type": "http.request", "body": self._body, "more_body": False}
            await self._released.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            self._messages.put_nowait(message)

        try:
            await app(scope, receive, send)
        except Exception as exc:  # the app failed: to the reader, as a broken connection
            self._messages.put_nowait(ConnectionBroken(f"the in-process upstream failed: {exc!r}"))
        finally:
            self._messages.put_nowait(None)

    async def _next(self) -> dict[str, Any] | None:
        item = await self._messages.get()
        if isinstance(item, BaseException):
            raise item
        return item

    async def started(self) -> None:
        message = await self._next()
        if message is None or message.get("type") != "http.response.start":
            raise ConnectionBroken("the in-process upstream ended without an answer")
        self.status = int(message["status"])
        self.headers = Headers(
            (name.decode("latin-1").lower(), value.decode("latin-1")) for name, value in message.get("headers", [])
        )

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.iter_chunks()])

    async def iter_chunks(self, read_timeout: float | None = None) -> AsyncIterator[bytes]:
        while not self._done:
            async with asyncio.timeout(read_timeout):
                message = await self._next()
            if message is None:
                raise ConnectionBroken("the in-process upstream ended in the middle of its answer")
            if message.get("type") != "http.response.body":
                continue
            if not message.get("more_body", False):
                self._done = True
            if message.get("body"):
                yield message["body"]

    def release(self) -> None:
        self._released.set()
        if not self._task.done():
            self._task.cancel()
            with contextlib.suppress(Exception):
                self._task.add_done_callback(_consume)


def _consume(task: asyncio.Future[None]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved, so asyncio does not log it as never retrieved
