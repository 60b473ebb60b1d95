"""An upstream that echoes the provider key in its errors never gets it to the caller or the log.

The echo upstream below answers each scenario (chosen by the request's ``model``) with the
credential header it received written into an error: as a stream error event before or after the
first chunk (OpenAI and Anthropic wire formats), in a Content-Type, in a text body cut at 500
characters, and with a newline that would forge a log line.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from gateway_server.app import create_app
from gateway_server.config import parse_config
from gateway_server.testing import serve_in_thread
from gateway_server.testing._asgi import encode_headers, lifespan, read_body

KEY = "sk-echo-0123456789abcdefghijklmnopqrstuvwxyzABCDEF"
ANTHROPIC_KEY = "sk-ant-echo-0123456789abcdefghijklmnopqrstuvwxyz"


def _sse(*events: dict[str, Any], named: bool = False) -> bytes:
    out = b""
    for event in events:
        if named:
            out += b"event: " + event["type"].encode() + b"\n"
        out += b"data: " + orjson.dumps(event) + b"\n\n"
    return out


def _openai_chunk(text: str) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}


_ANTHROPIC_START = [
    {"type": "message_start", "message": {"id": "m", "model": "c", "usage": {"input_tokens": 1}}},
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "hi"}},
]


def _answer(scenario: str, credential: str) -> tuple[int, dict[str, str], bytes | list[bytes]]:
    echo = f"invalid credential: {credential}"
    sse = {"content-type": "text/event-stream"}
    if scenario == "openai-first":
        return 200, sse, _sse({"error": {"message": echo}})
    if scenario == "openai-after":
        return 200, sse, [_sse(_openai_chunk("hello")), _sse({"error": {"message": echo}})]
    if scenario in ("anthropic-first", "anthropic-after"):
        # "overloaded" (a 503): retryable, so with a fallback the failure is logged
        error = {"type": "error", "error": {"type": "overloaded_error", "message": echo}}
        if scenario == "anthropic-after":
            return 200, sse, [_sse(*_ANTHROPIC_START, named=True), _sse(error, named=True)]
        return 200, sse, _sse(error, named=True)
    if scenario == "content-type":
        return 200, {"content-type": f"text/html; {credential}"}, b"<html>not json</html>"
    if scenario == "cut":  # the key straddles the 500-character cut of a text error body
        return 500, {"content-type": "text/plain"}, (("x" * 447) + " " + echo).encode()
    if scenario == "forge":
        return (
            500,
            {"content-type": "application/json"},
            orjson.dumps({"error": {"message": "bad request\nERROR gateway_server: forged line"}}),
        )
    return 404, {}, b""


class EchoUpstream:
    """Raw ASGI: answers the scenario named by the request's ``model`` field."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        body = orjson.loads(await read_body(receive) or b"{}")
        headers = dict(scope["headers"])
        credential = (headers.get(b"authorization") or headers.get(b"x-api-key") or b"").decode()
        status, reply_headers, content = _answer(body.get("model", ""), credential)
        await send(
            {"type": "http.response.start", "status": status, "headers": encode_headers(reply_headers)}
        )
        parts = content if isinstance(content, list) else [content]
        for index, part in enumerate(parts):
            if index:  # a later part comes in a later read: after the gateway sent the first chunk
                await asyncio.sleep(0.3)
            await send({"type": "http.response.body", "body": part, "more_body": index < len(parts) - 1})


@pytest.fixture(scope="module")
def gateway() -> Iterator[httpx.Client]:
    with serve_in_thread(EchoUpstream()) as upstream:
        openai = f"{{openai_api_key: {KEY}, openai_api_base: '{upstream.url}/v1'}}"
        anthropic = f"{{anthropic_api_key: {ANTHROPIC_KEY}, anthropic_api_base: '{upstream.url}/v1'}}"
        routes = "".join(
            f"""
  - name: {name}
    route_type: llm/v1/chat
    model: {{provider: {provider}, name: {name}, config: {config}}}
    fallbacks: [{{provider: fake, name: fake-chat}}]
"""
            for name, provider, config in [
                ("openai-first", "openai", openai),
                ("openai-after", "openai", openai),
                ("anthropic-first", "anthropic", anthropic),
                ("anthropic-after", "anthropic", anthropic),
                ("content-type", "openai", openai),
                ("cut", "openai", openai),
                ("forge", "openai", openai),
            ]
        )
        # Each route also exists without a fallback, so that its error reaches the caller.
        plain = routes.replace("    fallbacks: [{provider: fake, name: fake-chat}]\n", "").replace(
            "  - name: ", "  - name: plain-"
        )
        config = parse_config("routes:" + routes + plain)
        with (
            serve_in_thread(create_app(config)) as server,
            httpx.Client(base_url=server.url, timeout=10) as http,
        ):
            yield http


def _leaks(text: str) -> list[str]:
    found = []
    for key in (KEY, ANTHROPIC_KEY):
        for piece in (key, key[:16], key[-16:]):
            if piece in text:
                found.append(piece)
    return found


@pytest.mark.parametrize(
    ("scenario", "falls_back"),
    [("openai-first", False), ("openai-after", False), ("anthropic-first", True), ("anthropic-after", False)],
)
def test_stream_error_echoing_the_key_is_redacted(
    gateway: httpx.Client, scenario: str, falls_back: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    response = gateway.post(
        f"/gateway/plain-{scenario}/invocations",
        json={"messages": [{"role": "user", "content": "hi"}], "stream": True},
    )
    assert "invalid credential" in response.text  # the provider's reason is kept...
    assert _leaks(response.text) == []  # ...without the key
    if scenario.endswith("after"):
        assert response.status_code == 200 and '"error"' in response.text.splitlines()[-2]
    else:
        assert response.status_code in (502, 503)
    # With a fallback the failure is logged before the next model answers: the log is clean too.
    fallback = gateway.post(
        f"/gateway/{scenario}/invocations",
        json={"messages": [{"role": "user", "content": "hi"}], "stream": True},
    )
    if falls_back:
        assert fallback.status_code == 200 and "trying the next model" in caplog.text
    assert _leaks(caplog.text) == []


@pytest.mark.parametrize("scenario", ["content-type", "cut"])
def test_error_echoing_the_key_in_a_header_or_a_cut_body_is_redacted(
    gateway: httpx.Client, scenario: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    response = gateway.post(
        f"/gateway/plain-{scenario}/invocations", json={"messages": [{"role": "user", "content": "hi"}]}
    )
    assert response.status_code == 502
    assert _leaks(response.text) == []
    assert (
        gateway.post(
            f"/gateway/{scenario}/invocations", json={"messages": [{"role": "user", "content": "hi"}]}
        ).status_code
        == 200
    )
    assert _leaks(caplog.text) == []


def test_upstream_text_cannot_forge_a_log_line(
    gateway: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    response = gateway.post(
        "/gateway/forge/invocations", json={"messages": [{"role": "user", "content": "hi"}]}
    )
    assert response.status_code == 200  # answered by the fallback; the failure was logged
    logged = [record.getMessage() for record in caplog.records if "forged line" in record.getMessage()]
    assert logged and all("\n" not in line for line in logged)
    assert "bad request\\nERROR gateway_server: forged line" in logged[0]
    error = gateway.post(
        "/gateway/plain-forge/invocations", json={"messages": [{"role": "user", "content": "hi"}]}
    ).json()["error"]
    assert (
        "\n" not in error["message"] and error["reason"] == "bad request\\nERROR gateway_server: forged line"
    )
