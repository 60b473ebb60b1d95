"""A fake gateway for client tests: an ``httpx.MockTransport`` handler that records every request."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx

BASE = "http://gateway.test:5000"


class Recorder:
    """A MockTransport handler: records requests, answers with ``reply(request)`` or queued responses."""

    def __init__(self, reply: Callable[[httpx.Request], httpx.Response] | None = None) -> None:
        self.requests: list[httpx.Request] = []
        self._reply = reply
        self._queue: list[httpx.Response | Exception] = []

    def queue(self, *answers: httpx.Response | Exception) -> Recorder:
        self._queue.extend(answers)
        return self

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        if self._queue:
            answer = self._queue.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return answer
        assert self._reply is not None, f"unexpected request {request.method} {request.url}"
        return self._reply(request)

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]

    def body(self, index: int = -1) -> Any:
        return json.loads(self.requests[index].content)


def route_json(name: str = "chat", route_type: str = "llm/v1/chat", url: str | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "route_type": route_type,
        "model": {"name": "gpt-4o-mini", "provider": "openai"},
        "route_url": url if url is not None else f"/gateway/{name}/invocations",
    }


def envelope(status: int, message: str, error_type: str) -> httpx.Response:
    payload = {"error": {"message": message, "type": error_type, "code": status}, "detail": message}
    return httpx.Response(status, json=payload)
