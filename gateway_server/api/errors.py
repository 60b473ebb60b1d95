"""Rendering of errors on the FastAPI side: every failure answers the one JSON envelope of
``GatewayError.to_payload``, through handlers registered once by :func:`install_error_handlers`.
The hot path renders the same envelope with ``api/envelope.py``.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway_server.api.envelope import REQUEST_ID_SCOPE, error_body, internal_error
from gateway_server.errors import ClientRequestError, GatewayError, InvalidRequestError

__all__ = ["install_error_handlers"]

logger = logging.getLogger("gateway_server")

JSON = "application/json"


def _render(exc: GatewayError, request: Request) -> Response:
    """The envelope, with ``error.request_id`` (the app puts the request's id in its scope)."""
    body = error_body(exc, request.scope.get(REQUEST_ID_SCOPE))
    return Response(body, status_code=exc.status_code, media_type=JSON, headers=exc.headers())


def _validation_message(exc: RequestValidationError) -> str:
    problems = []
    for error in exc.errors():
        loc = ".".join(str(part) for part in error.get("loc", ()) if part not in ("body", "query", "path"))
        problems.append(f"'{loc}': {error.get('msg')}" if loc else str(error.get("msg")))
    return "Invalid request: " + "; ".join(problems)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(GatewayError)
    async def _gateway_error(request: Request, exc: GatewayError) -> Response:
        return _render(exc, request)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        return _render(InvalidRequestError(_validation_message(exc), status_code=422), request)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        message = exc.detail if isinstance(exc.detail, str) else "HTTP error"
        if exc.status_code == 404:
            message = f"No such path: {request.url.path}. See /docs for the paths this gateway serves."
        elif exc.status_code == 405:
            message = f"Method {request.method} is not allowed on {request.url.path}."
        error = ClientRequestError(message, status_code=exc.status_code)
        response = _render(error, request)
        for key, value in (exc.headers or {}).items():
            response.headers[key] = value
        return response

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return _render(internal_error(), request)
