"""What the governance end-to-end tests share: payloads, the fake provider's exact usage, requests."""

from __future__ import annotations

import time
from typing import Any

import httpx

from gateway_server.providers.fake import FakeConfig, answer, answer_stream
from gateway_server.routes import RouteType
from gateway_server.usage import StreamUsage, Usage, usage_of

TEXT = "Hello there friend"
PAYLOADS: dict[RouteType, dict[str, Any]] = {
    RouteType.CHAT: {"messages": [{"role": "user", "content": TEXT}], "max_tokens": 9},
    RouteType.COMPLETIONS: {"prompt": TEXT, "max_tokens": 9},
    RouteType.EMBEDDINGS: {"input": TEXT},
}
V1_PATHS = {
    RouteType.CHAT: "/v1/chat/completions",
    RouteType.COMPLETIONS: "/v1/completions",
    RouteType.EMBEDDINGS: "/v1/embeddings",
}
FAMILIES = ("gateway", "endpoints", "v1")


def usage(route_type: RouteType) -> Usage:
    """The fake provider's usage for PAYLOADS[route_type]."""
    payload = {**PAYLOADS[route_type], "model": "fake-model"}
    return usage_of(answer(route_type, payload, FakeConfig()), payload)


def tokens_per_request(route_type: RouteType, stream: bool = False) -> int:
    """What one request with PAYLOADS[route_type] uses on the fake provider (it is deterministic)."""
    payload = {**PAYLOADS[route_type], "model": "fake-model"}
    if not stream:
        return usage_of(answer(route_type, payload, FakeConfig()), payload).total
    tally = StreamUsage()
    for chunk in answer_stream(route_type, payload, FakeConfig()):
        tally(chunk)
    return tally.result(payload).total


def invoke(
    base: str, family: str, route: str, route_type: RouteType, key: str, *, stream: bool = False
) -> httpx.Response:
    """One request on ``route`` through ``family``; a stream is read to its end."""
    body: dict[str, Any] = dict(PAYLOADS[route_type])
    if stream:
        body["stream"] = True
    if family == "v1":
        url, body = base + V1_PATHS[route_type], {**body, "model": route}
    else:
        url = f"{base}/{family}/{route}/invocations"
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.stream("POST", url, json=body, headers=headers, timeout=30) as response:
        response.read()
    if stream and response.status_code == 200:
        assert response.text.rstrip().endswith("data: [DONE]"), response.text
    return response


def clear_of_the_hour(margin: float = 30.0) -> None:
    """Wait out the last ``margin`` seconds of a UTC hour. The tests' windows are an hour long and
    slide: once the hour turns, the previous hour's count starts to fade, so a count that filled the
    window exactly leaves room for one more request. An exact-boundary count must not straddle it."""
    left = 3600 - time.time() % 3600
    if left < margin:
        time.sleep(left + 0.5)


def admitted_until_refused(call: Any, most: int = 50) -> tuple[int, httpx.Response]:
    """Call until a refusal: ``(number admitted, the refusing response)``."""
    clear_of_the_hour()
    for admitted in range(most):
        response = call()
        if response.status_code != 200:
            return admitted, response
    raise AssertionError(f"no refusal after {most} requests")
