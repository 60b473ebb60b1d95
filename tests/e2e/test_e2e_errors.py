"""Every kind of failure, through the real gateway process: the status AND a message that says what
happened, in the one envelope ``{"error": {"message", "type", "code"}, "detail"}`` (SPEC §3).

Bad input: malformed JSON 400, wrong field type 400 naming the field, unknown route 404 (a provider
lacking the route type is a config error, tests/unit/test_config.py). Upstream trouble (fake OpenAI): 400 → 400, 401 → 502, 429 → 429 with
Retry-After, 500 → 502, slower than the route's ``timeout: 1`` → 504, connection refused → 502,
a non-JSON reply → 502.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from e2e_support import SENTINEL

from gateway_server.testing import FakeOpenAI, Fault

pytestmark = pytest.mark.e2e

CHAT = {"messages": [{"role": "user", "content": "hello there"}]}
PATHS = {
    "gateway": "/gateway/{route}/invocations",
    "endpoints": "/endpoints/{route}/invocations",
}


def error_of(response: httpx.Response, status: int) -> str:
    """Assert the status and the envelope; return the message."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    error = body["error"]
    assert error["code"] == status
    assert isinstance(error["type"], str) and error["type"]
    assert body["detail"] == error["message"]
    return error["message"]


def invoke(http: httpx.Client, route: str, body: Any, family: str = "gateway") -> httpx.Response:
    return http.post(PATHS[family].format(route=route), json=body)


# ------------------------------------------------------------------ the caller's mistakes


@pytest.mark.parametrize(
    "path",
    ["/gateway/fake-chat/invocations", "/endpoints/fake-chat/invocations", "/v1/chat/completions"],
)
def test_malformed_json_is_400(http: httpx.Client, path: str) -> None:
    response = http.post(path, content=b'{"messages": [', headers={"content-type": "application/json"})
    message = error_of(response, 400)
    assert "not valid JSON" in message


def test_json_that_is_not_an_object_is_400(http: httpx.Client) -> None:
    response = http.post("/gateway/fake-chat/invocations", json=["hello"])
    assert "must be a JSON object" in error_of(response, 400)


# A seed-era name (``text``, ``candidate_count``) is reported as the caller sent it, not as the
# OpenAI name (``input``, ``n``) it is translated to.
@pytest.mark.parametrize(
    ("route", "body", "field"),
    [
        pytest.param("fake-chat", {**CHAT, "temperature": "hot"}, "temperature", id="temperature"),
        pytest.param("fake-chat", {**CHAT, "max_tokens": 1.5}, "max_tokens", id="max_tokens"),
        pytest.param("fake-chat", {"messages": "hello"}, "messages", id="messages"),
        pytest.param(
            "fake-chat", {"messages": [{"role": "user", "content": 42}]}, "messages[0].content", id="content"
        ),
        pytest.param("fake-completions", {"prompt": 42}, "prompt", id="prompt"),
        pytest.param("fake-embeddings", {"input": {"a": 1}}, "input", id="embeddings-input"),
        pytest.param("fake-embeddings", {"text": {"a": 1}}, "text", id="embeddings-text"),
        pytest.param("openai-chat", {**CHAT, "n": "two"}, "n", id="n"),
        pytest.param(
            "openai-chat", {**CHAT, "candidate_count": "two"}, "candidate_count", id="candidate_count"
        ),
    ],
)  # fmt: skip
def test_wrong_field_type_is_400_naming_the_field(
    http: httpx.Client, e2e_openai: FakeOpenAI, route: str, body: dict[str, Any], field: str
) -> None:
    message = error_of(invoke(http, route, body), 400)
    assert f"'{field}'" in message
    assert e2e_openai.requests == [], "an invalid request must not reach the upstream"


def test_missing_field_is_400_naming_it(http: httpx.Client) -> None:
    message = error_of(invoke(http, "fake-chat", {"temperature": 0.1}), 400)
    assert "'messages'" in message


def test_unknown_route_is_404_naming_it(http: httpx.Client) -> None:
    message = error_of(invoke(http, "no-such-route", CHAT), 404)
    assert message == (
        "The route 'no-such-route' is not present or active on the server. Please verify the route name."
    )
    message = error_of(invoke(http, "no-such-route", CHAT, family="endpoints"), 404)
    assert "'no-such-route'" in message and "endpoint" in message
    message = error_of(http.get("/api/2.0/gateway/routes/no-such-route"), 404)
    assert "'no-such-route'" in message


def test_unknown_model_on_v1_is_404_naming_it(http: httpx.Client) -> None:
    message = error_of(http.post("/v1/chat/completions", json={"model": "no-such-route", **CHAT}), 404)
    assert "'no-such-route'" in message


def test_v1_route_of_another_type_is_400(http: httpx.Client) -> None:
    message = error_of(http.post("/v1/embeddings", json={"model": "fake-chat", "input": "x"}), 400)
    assert "'fake-chat'" in message and "llm/v1/chat" in message


def test_get_on_an_invocation_path_is_405(http: httpx.Client) -> None:
    message = error_of(http.get("/gateway/fake-chat/invocations"), 405)
    assert "GET" in message and "POST" in message


# ------------------------------------------------------------------ the upstream's trouble


def test_upstream_400_is_400_with_the_providers_reason(http: httpx.Client, e2e_openai: FakeOpenAI) -> None:
    reason = "This model's maximum context length is 8192 tokens."
    e2e_openai.inject(Fault.error(400, {"error": {"message": reason, "type": "invalid_request_error"}}))
    message = error_of(invoke(http, "fail-400", CHAT), 400)
    assert message == f"openai returned HTTP 400: {reason}"
    assert len(e2e_openai.requests) == 1


def test_upstream_401_is_502(http: httpx.Client, e2e_openai: FakeOpenAI) -> None:
    """The route's key is wrong (the fake upstream checks it): the caller cannot fix that, so 502."""
    message = error_of(invoke(http, "fail-wrong-key", CHAT), 502)
    assert message.startswith("openai returned HTTP 401: Incorrect API key provided")
    assert len(e2e_openai.requests) == 1


def test_upstream_401_echoing_the_key_is_redacted(http: httpx.Client, e2e_openai: FakeOpenAI) -> None:
    """Some providers quote the key they refused; the gateway must not pass it on."""
    body = {"error": {"message": f"Incorrect API key provided: {SENTINEL}.", "code": "invalid_api_key"}}
    e2e_openai.inject(Fault.error(401, body))
    message = error_of(invoke(http, "fail-401-echo", CHAT), 502)  # the http fixture checks for the key too
    assert message.startswith("openai returned HTTP 401: Incorrect API key provided: ")


def test_upstream_429_is_429_with_retry_after(http: httpx.Client, e2e_openai: FakeOpenAI) -> None:
    e2e_openai.inject(Fault.rate_limited(retry_after=7))
    response = invoke(http, "fail-429", CHAT)
    message = error_of(response, 429)
    assert message.startswith("openai returned HTTP 429")
    assert response.headers["retry-after"] == "7"
    assert len(e2e_openai.requests) == 1


@pytest.mark.parametrize("status", [500, 503])
def test_upstream_5xx_is_502(http: httpx.Client, e2e_openai: FakeOpenAI, status: int) -> None:
    e2e_openai.inject(Fault.error(status))
    message = error_of(invoke(http, f"fail-{status}", CHAT), 502)
    assert message == f"openai returned HTTP {status}: Injected fault: status {status}"


def test_upstream_slower_than_the_route_timeout_is_504(http: httpx.Client, e2e_openai: FakeOpenAI) -> None:
    e2e_openai.inject(Fault.slow(5))
    started = time.monotonic()
    response = invoke(http, "fail-slow", CHAT)
    elapsed = time.monotonic() - started
    message = error_of(response, 504)
    assert "openai" in message and "did not answer within 1 s" in message
    assert elapsed < 4, f"the 1 s route timeout took {elapsed:.1f}s to fire"


def test_upstream_connection_refused_is_502(http: httpx.Client, closed_port: int) -> None:
    message = error_of(invoke(http, "fail-closed", CHAT), 502)
    assert message.startswith(f"could not connect to openai at 127.0.0.1:{closed_port}")


def test_upstream_non_json_reply_is_502(http: httpx.Client, e2e_openai: FakeOpenAI) -> None:
    e2e_openai.inject(Fault.not_json())
    message = error_of(invoke(http, "fail-non-json", CHAT), 502)
    assert "openai" in message and "text/html" in message and "expected JSON" in message


def test_upstream_dropping_the_connection_is_502(http: httpx.Client, e2e_openai: FakeOpenAI) -> None:
    e2e_openai.inject(Fault.disconnect())
    message = error_of(invoke(http, "fail-drop", CHAT), 502)
    assert "openai" in message and "127.0.0.1" in message


def test_upstream_errors_on_the_openai_paths_too(http: httpx.Client, e2e_openai: FakeOpenAI) -> None:
    e2e_openai.inject(Fault.error(500), times=2)
    assert "HTTP 500" in error_of(invoke(http, "fail-endpoints", CHAT, family="endpoints"), 502)
    assert "HTTP 500" in error_of(http.post("/v1/chat/completions", json={"model": "fail-v1", **CHAT}), 502)
