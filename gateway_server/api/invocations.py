"""The hot path: every query (``/gateway/{name}/invocations``, ``/endpoints/{name}/invocations``,
``/v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings``) is served here.

These are bare ASGI handlers, not FastAPI routes: no dependency injection, no response-model
validation, one JSON parse and one JSON dump per request (orjson), and everything derivable from
the config precomputed in the registry entry. SPEC §1 has the measurements behind this choice.
Cross-cutting rules live here once: the caller's ``model`` is ignored on named routes, the body
size is capped, errors are rendered as the one envelope.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass
from time import perf_counter
from typing import Any, Final

import orjson

from gateway_server.api import paths
from gateway_server.api.agent_messages import CountTokensProtocol, MessagesProtocol
from gateway_server.api.agent_responses import ResponsesProtocol
from gateway_server.api.agent_stream import AgentCall
from gateway_server.api.body_guard import ClientGone, check_depth, read_body
from gateway_server.api.envelope import error_body, internal_error
from gateway_server.api.streaming import MODEL_HEADER, stream_response
from gateway_server.auth import QUERY
from gateway_server.errors import (
    GatewayError,
    InvalidRequestError,
    MethodNotAllowedError,
    PayloadTooLargeError,
    RouteNotFoundError,
)
from gateway_server.observability import CURRENT, REQUEST_ID_HEADER, Record, request_id_of
from gateway_server.registry import RouteEntry
from gateway_server.reliability import call as call_upstream
from gateway_server.routes import RouteType
from gateway_server.schemas import TO_LEGACY, VALIDATORS
from gateway_server.server_limits import DISCONNECT_HOOK
from gateway_server.usage import Usage, usage_of

__all__ = ["Flavor", "Invocation", "handle_invocation", "handle_resource", "match_invocation"]

logger = logging.getLogger("gateway_server")

JSON_HEADERS = [(b"content-type", b"application/json")]
_NOTHING = Usage()
OVERHEAD_HEADER = b"x-gateway-overhead-ms"
CLIENT_CLOSED = 499  # the status counted (never sent) for a caller that hung up before the answer


class Flavor:
    """The path families; each value is also the ``family`` label of the metrics and the access
    line. Plain strings, not an Enum: read on every request, where an Enum's ``.value`` is a
    Python-level descriptor call."""

    LEGACY: Final = "gateway"  # seed-era shapes (candidates / metadata)
    ENDPOINTS: Final = "endpoints"  # MLflow 2.9+: OpenAI shapes on a named route
    V1: Final = "v1"  # OpenAI-compatible: the route is the body's ``model``


@dataclass(frozen=True, slots=True)
class Invocation:
    flavor: str  # a Flavor value
    name: str | None  # None for /v1/*: taken from the body
    v1_type: RouteType | None = None
    protocol: Any = None  # an agent protocol (api/agent_*.py): its own shapes, errors and streams
    resource: str | None = None  # GET/DELETE /v1/responses/{id}: a stored object, no route
    render: Any = error_body  # (GatewayError, request id) -> body; an agent protocol has its own


_V1 = {
    paths.V1_CHAT: RouteType.CHAT,
    paths.V1_COMPLETIONS: RouteType.COMPLETIONS,
    paths.V1_EMBEDDINGS: RouteType.EMBEDDINGS,
}
_RESPONSES = ResponsesProtocol()
_AGENTS = {
    path: Invocation(Flavor.V1, None, RouteType.CHAT, protocol, render=protocol.error_body)
    for path, protocol in (
        (paths.V1_MESSAGES, MessagesProtocol()),
        (paths.V1_MESSAGES_COUNT_TOKENS, CountTokensProtocol()),
        (paths.V1_RESPONSES, _RESPONSES),
    )
}
_SUFFIX = paths.INVOCATIONS_SUFFIX
_PREFIXES = ((paths.GATEWAY_PREFIX, Flavor.LEGACY), (paths.ENDPOINTS_PREFIX, Flavor.ENDPOINTS))
_ID_PREFIX = {RouteType.CHAT: "chatcmpl-", RouteType.COMPLETIONS: "cmpl-"}


def match_invocation(path: str) -> Invocation | None:
    """The invocation a path names, or None when FastAPI should serve it."""
    v1_type = _V1.get(path)
    if v1_type is not None:
        return Invocation(Flavor.V1, None, v1_type)
    agent = _AGENTS.get(path)
    if agent is not None:
        return agent
    if path.startswith(paths.V1_RESPONSE_PREFIX):
        response_id = path[len(paths.V1_RESPONSE_PREFIX) :]
        if response_id and "/" not in response_id:
            return Invocation(Flavor.V1, None, RouteType.CHAT, _RESPONSES, response_id, _RESPONSES.error_body)
    if path.endswith(_SUFFIX):
        for prefix, flavor in _PREFIXES:
            if path.startswith(prefix):
                name = path[len(prefix) : -len(_SUFFIX)]
                if name and "/" not in name:
                    return Invocation(flavor, name)
    return None


def _parse_payload(body: bytes) -> dict[str, Any]:
    if not body:
        raise InvalidRequestError("The request body is empty; send a JSON object.")
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequestError(f"The request body is not valid JSON: {exc}.") from None
    if not isinstance(payload, dict):
        raise InvalidRequestError(
            f"The request body must be a JSON object, not a JSON {type(payload).__name__}."
        )
    check_depth(body, payload)
    return payload


def _resolve(state: Any, invocation: Invocation, payload: dict[str, Any]) -> RouteEntry:
    if invocation.flavor is Flavor.V1:
        name = payload.pop("model", None)
        if not isinstance(name, str) or not name:
            raise InvalidRequestError(
                "Missing 'model': on /v1 paths 'model' names the gateway route to use (see GET /v1/models).",
                param="model",
            )
        entry = state.registry.resolve(name)  # a route name or one of its aliases
        if entry is None:
            raise RouteNotFoundError(name)
        if entry.route_type is not invocation.v1_type:
            raise InvalidRequestError(
                f"Route '{name}' is a {entry.route_type.value} route, not a {invocation.v1_type.kind} route "  # type: ignore[union-attr]
                f"(use the path for {entry.route_type.kind}).",
                param="model",
            )
        return entry
    entry = state.registry.get(invocation.name)
    if entry is None:
        raise RouteNotFoundError(
            invocation.name,  # type: ignore[arg-type]  # set on every non-/v1 invocation
            noun="route" if invocation.flavor is Flavor.LEGACY else "endpoint",
        )
    # The route defines the model; a caller's ``model`` is ignored here (MLflow answers 422).
    payload.pop("model", None)
    return entry


def _finish(result: dict[str, Any], route_type: RouteType) -> dict[str, Any]:
    """Fill what a provider's answer may lack: id and created (the transforms stay pure)."""
    if route_type is not RouteType.EMBEDDINGS:
        if not result.get("id"):
            result["id"] = _ID_PREFIX[route_type] + uuid.uuid4().hex
        if not result.get("created"):
            result["created"] = int(time.time())
    return result


async def _call(state: Any, entry: RouteEntry, payload: dict[str, Any], scope: dict[str, Any]) -> Any:
    """The upstream call (deadline, retries, fallbacks, split, breakers: reliability.py).

    A caller that hangs up cancels it (the server's protocol calls the hook): the upstream request
    is closed instead of running for the whole route timeout, and :class:`ClientGone` is raised."""
    task = asyncio.current_task()
    assert task is not None
    scope[DISCONNECT_HOOK] = task.cancel
    try:
        return await call_upstream(state.upstream, entry.plan, entry.route_type, payload)
    except asyncio.CancelledError:
        if DISCONNECT_HOOK in scope:  # not the caller leaving (the server shutting down)
            raise
        task.uncancel()
        raise ClientGone from None
    finally:
        scope.pop(DISCONNECT_HOOK, None)


def _error_headers(exc: GatewayError, headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    extra = exc.headers()
    if extra:
        headers = headers + [(k.lower().encode(), v.encode()) for k, v in extra.items()]
    if isinstance(exc, PayloadTooLargeError):  # the rest of the body is not read: close
        headers = [*headers, (b"connection", b"close")]
    return headers


async def handle_invocation(  # noqa: C901 - one flat function per request is the hot path's design
    state: Any, invocation: Invocation, scope: dict[str, Any], receive: Any, send: Any
) -> None:
    started = perf_counter()
    upstream_seconds = 0.0
    fields = dict(scope["headers"])  # the few headers read here, looked up in one C-built dict
    record = _open_record(state, invocation, scope, fields, started)
    headers = [*JSON_HEADERS, (REQUEST_ID_HEADER, record.request_id.encode())]
    error: BaseException | None = None
    governor = state.governor
    ticket = None  # what admission reserved (limits, budgets), settled on what the answer used
    protocol = invocation.protocol
    render = invocation.render
    try:
        if scope["method"] != "POST":
            raise MethodNotAllowedError(
                f"Method {scope['method']} is not allowed on {scope['path']}; use POST."
            )
        # Before the body is read: 401/403 cost nothing and never reveal which routes exist.
        key_name = state.auth.authorize(scope["headers"], QUERY)  # None on a gateway without keys
        record.key = key_name or ""
        payload = _parse_payload(await read_body(scope, receive, state.max_request_bytes, fields))
        model = payload.get("model")
        entry = _resolve(state, invocation, payload)
        record.resolved(entry.name, entry.route_type, entry.plan.primaries)  # a known route only
        # Every path family reaches here (/gateway, /endpoints, /v1/*): limits and budgets, once,
        # before the body is validated (a malformed request still costs a call, as with MLflow).
        if (
            governor is not None
            and (entry.call_limits or entry.token_limits or key_name is not None)  # cheap "no" first
            and governor.applies(entry, key_name, state.config.auth)
        ):
            ticket = await governor.admit(entry, key_name, scope, payload)
            headers = headers + ticket.headers
        route_type = entry.route_type
        if protocol is not None:  # /v1/messages, /v1/responses: the protocol validates and answers
            call = AgentCall(
                state, entry, payload, str(model), scope, receive, send, started, (key_name, ticket)
            )
            answer = await protocol.invoke(call)
            ticket = None  # the protocol charged what its answer used (agent_stream.charge)
            if isinstance(answer, float):  # streamed; the gateway's own seconds up to the first event
                record.stream = True
                _finish_record(state, record, 200, perf_counter() - started, answer, None)
                return
            body, served, upstream_seconds = answer
            record.served = served
            status, headers = 200, [*headers, (MODEL_HEADER, served.header)]
        else:
            payload = VALIDATORS[route_type](payload)
            if payload.get("stream"):
                record.stream = True
                overhead = await stream_response(
                    state, entry, payload, receive, send, started, (key_name, ticket)
                )
                _finish_record(state, record, 200, perf_counter() - started, overhead, None)
                return
            upstream_started = perf_counter()
            try:  # deadline, retries, fallbacks, split, breakers: reliability.py (and the caller leaving)
                result, served = await _call(state, entry, payload, scope)
            finally:
                upstream_seconds = perf_counter() - upstream_started
            record.served = served
            used = record.usage = usage_of(result, payload)
            if governor is not None:  # charged at the price of the model that answered
                pending = governor.charge(ticket, key_name, entry.name, served, used)
                ticket = None  # settled (the ticket is emptied even if a shared store fails)
                if pending is not None:
                    await pending
            headers = [*headers, (MODEL_HEADER, served.header)]
            if not result.get("model"):
                result["model"] = served.adapter.model_name
            record.answered(result)
            result = _finish(result, route_type)
            if invocation.flavor is Flavor.LEGACY:
                result = TO_LEGACY[route_type](result)
            status, body = 200, orjson.dumps(result)
    except GatewayError as exc:
        error = exc
        await _release(governor, ticket)  # refused or failed after admission: release the reservation
        status, body = exc.status_code, render(exc, record.request_id)
        headers = _error_headers(exc, headers)
    except ClientGone:  # hung up before the answer: nobody to answer
        await _release(governor, ticket)
        _finish_record(state, record, CLIENT_CLOSED, perf_counter() - started, 0.0, None)
        return
    except asyncio.CancelledError:  # the client left (a stream): counted as 499, nginx's "client closed"
        if ticket is not None:  # cancelled with its reservation (shutdown): given back, no await
            governor.release_soon(ticket)
        _finish_record(state, record, CLIENT_CLOSED, perf_counter() - started, 0.0, None)
        raise
    except Exception as exc:  # the process edge: log it, answer the envelope, never a bare 500 page
        error = exc
        logger.exception("unhandled error while serving %s (request %s)", scope.get("path"), record.request_id)
        await _release(governor, ticket)
        internal = internal_error()
        status, body = internal.status_code, render(internal, record.request_id)
    elapsed = perf_counter() - started
    overhead_ms = (elapsed - upstream_seconds) * 1000
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                *headers,
                (b"content-length", str(len(body)).encode()),
                (OVERHEAD_HEADER, f"{overhead_ms:.3f}".encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
    _finish_record(state, record, status, elapsed, elapsed - upstream_seconds, error)


async def _release(governor: Any, ticket: Any) -> None:
    """Give back what admission reserved for a request that failed (nothing, if it reserved none)."""
    if ticket is not None:
        await governor.settle(ticket, _NOTHING, None)


def _open_record(
    state: Any, invocation: Invocation, scope: dict[str, Any], fields: dict[bytes, bytes], started: float
) -> Record:
    record = Record(state.metrics, invocation.flavor, request_id_of(fields), started)
    CURRENT.set(record)  # the task's own context: the reliability loop and upstream client see it
    if state.tracer is not None:
        state.tracer.start_request(record, scope)
    return record


def _finish_record(
    state: Any, record: Record, status: int, seconds: float, overhead: float, error: BaseException | None
) -> None:
    record.finish(status, seconds, overhead, error)
    if state.access_log is not None:
        state.access_log.write(record, status, seconds, overhead, error)


async def handle_resource(state: Any, invocation: Invocation, scope: dict[str, Any], send: Any) -> None:
    """``GET``/``DELETE`` of a stored agent-protocol object (``/v1/responses/{id}``): the query key,
    the protocol's error shape, no route, rate limit or upstream."""
    protocol = invocation.protocol
    request_id = request_id_of(scope["headers"])
    headers = [*JSON_HEADERS, (REQUEST_ID_HEADER, request_id.encode())]
    try:
        if scope["method"] not in ("GET", "DELETE"):
            raise MethodNotAllowedError(
                f"Method {scope['method']} is not allowed on {scope['path']}; use GET or DELETE."
            )
        state.auth.authorize(scope["headers"], QUERY)
        status, body = 200, await protocol.resource(state, scope["method"], invocation.resource)
    except GatewayError as exc:
        status, body = exc.status_code, protocol.error_body(exc, request_id)
        extra = exc.headers()
        if extra:
            headers = headers + [(k.lower().encode(), v.encode()) for k, v in extra.items()]
    except Exception:  # the process edge
        logger.exception("unhandled error while serving %s (request %s)", scope.get("path"), request_id)
        error = internal_error()
        status, body = error.status_code, protocol.error_body(error, request_id)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
