"""Request bodies, bounded on every path: read at most ``server.max_request_bytes``, and never before
the caller has shown the key the path needs.

The invocation paths read their body with :func:`read_body` after checking the ``query`` key.
Everything else goes to FastAPI, which reads and parses a whole body before any dependency (the key
check included) runs; :func:`guard` stands in front of it: route changes (any write method on the
routes and endpoints paths) need the ``admin`` key before a byte of the body is read, a declared
``Content-Length`` over the cap is answered 413 at once, and a body is read (capped) here and
replayed to FastAPI. Refusals that leave a body unread close the connection, so the server does not
read (and discard) the rest of it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from gateway_server.api import paths
from gateway_server.api.envelope import REQUEST_ID_SCOPE
from gateway_server.auth import ADMIN
from gateway_server.errors import GatewayError, InvalidRequestError, PayloadTooLargeError

__all__ = ["MAX_JSON_DEPTH", "ClientGone", "check_depth", "guard", "read_body", "send_error"]

Receive = Callable[[], Awaitable[dict[str, Any]]]

_ADMIN_PREFIXES = (paths.ROUTES, paths.ROUTES.rstrip("/"), paths.ENDPOINTS, paths.ENDPOINTS.rstrip("/"))
_READ_ONLY = frozenset(("GET", "HEAD", "OPTIONS"))

# The deepest JSON a request may nest, in arrays and objects. orjson writes at most 254 levels (and
# reads 1024), and the adapters nest a caller's values a few levels deeper, so a payload nested
# more deeply than this would fail later, inside the gateway, instead of as the caller's error.
MAX_JSON_DEPTH = 128


class ClientGone(Exception):
    """The caller hung up before its request body arrived: there is nobody to answer."""


def declared_length(headers: list[tuple[bytes, bytes]] | dict[bytes, bytes]) -> int | None:
    """The request's ``Content-Length`` (``headers``: the scope's list, or that list as a dict)."""
    value = (headers if isinstance(headers, dict) else dict(headers)).get(b"content-length")
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise InvalidRequestError("The Content-Length header is not a number.") from None


def _too_large(declared: int, limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"The request body is {declared} bytes; this gateway accepts at most {limit} "
        "(server.max_request_bytes in its config)."
    )


async def read_body(
    scope: dict[str, Any], receive: Receive, limit: int, fields: dict[bytes, bytes] | None = None
) -> bytes:
    """The whole body, or :class:`PayloadTooLargeError` as soon as it is known to exceed ``limit``
    (at once for a declared ``Content-Length``), or :class:`ClientGone`. ``fields``: the request's
    headers as a dict, when the caller has made one.

    The common case costs one ``receive``: a small body arrives whole with its headers."""
    declared = declared_length(fields if fields is not None else scope["headers"])
    if declared is not None and declared > limit:
        raise _too_large(declared, limit)
    message = await receive()
    if not message.get("more_body", False) and message["type"] == "http.request":
        body: bytes = message.get("body", b"")
        if len(body) > limit:
            raise _too_large(len(body), limit)
        return body
    chunks = []
    size = 0
    while True:
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise PayloadTooLargeError(
                    f"The request body is larger than {limit} bytes, the most this gateway accepts "
                    "(server.max_request_bytes in its config)."
                )
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
        message = await receive()
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def check_depth(body: bytes, payload: Any) -> None:
    """:class:`InvalidRequestError` (400) when ``payload`` (parsed from ``body``) nests more than
    ``MAX_JSON_DEPTH`` levels. Costs two byte counts unless the body has that many brackets."""
    if body.count(b"[") + body.count(b"{") <= MAX_JSON_DEPTH:
        return
    level = [payload]
    for depth in range(1, MAX_JSON_DEPTH + 2):
        nested: list[Any] = []
        for value in level:
            if isinstance(value, dict):
                nested.extend(value.values())
            elif isinstance(value, list):
                nested.extend(value)
        level = [value for value in nested if isinstance(value, (dict, list))]
        if not level:
            return
        if depth >= MAX_JSON_DEPTH:
            break
    raise InvalidRequestError(
        f"The request body nests JSON arrays and objects more than {MAX_JSON_DEPTH} levels deep; "
        "this gateway accepts at most that."
    )


async def send_error(
    send: Any, error: GatewayError, *, close: bool = False, request_id: str | None = None
) -> None:
    payload = error.to_payload()
    if request_id is not None:
        payload["error"]["request_id"] = request_id
    body = orjson.dumps(payload)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in error.headers().items()]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": error.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _has_body(headers: list[tuple[bytes, bytes]]) -> bool:
    for key, value in headers:
        if key == b"transfer-encoding" or (key == b"content-length" and value.strip() not in (b"0", b"")):
            return True
    return False


async def guard(state: Any, scope: dict[str, Any], receive: Receive, send: Any) -> Receive | None:
    """Check what can be checked before FastAPI sees the request. Returns the ``receive`` to give
    FastAPI (replaying the body read here), or None when the request was answered here."""
    headers = scope["headers"]
    try:
        if scope["method"] not in _READ_ONLY and scope["path"].startswith(_ADMIN_PREFIXES):
            state.auth.authorize(headers, ADMIN)  # 401/403 before a byte of the body is read
        if not _has_body(headers):
            return receive
        body = await read_body(scope, receive, state.max_request_bytes)
        if body.count(b"[") + body.count(b"{") > MAX_JSON_DEPTH:  # FastAPI's json would recurse
            try:
                parsed = orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                raise InvalidRequestError(f"The request body is not valid JSON: {exc}.") from None
            check_depth(body, parsed)
    except ClientGone:
        return None
    except GatewayError as error:
        await send_error(send, error, close=_has_body(headers), request_id=scope.get(REQUEST_ID_SCOPE))
        return None
    replayed = False

    async def replay() -> dict[str, Any]:
        nonlocal replayed
        if replayed:
            return await receive()  # waits for the disconnect, as FastAPI expects
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay
