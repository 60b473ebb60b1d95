"""Non-2xx answers become the server's typed errors; no answer becomes GatewayUnreachableError.

Retry policy: GETs are retried on a failed connection; a POST is never sent twice.
"""

from __future__ import annotations

import httpx
import pytest
from mock_gateway import BASE, Recorder, envelope, route_json

import gatewayctl
from gatewayctl import (
    AuthenticationError,
    ConfigError,
    GatewayClient,
    GatewayError,
    GatewayTimeoutError,
    GatewayUnreachableError,
    InvalidRequestError,
    RateLimitError,
    RouteNotFoundError,
    UnsupportedRouteTypeError,
    UpstreamError,
    UpstreamStatusError,
    UpstreamTimeoutError,
)


def client_for(recorder: Recorder, **kwargs: object) -> GatewayClient:
    return GatewayClient(BASE, transport=httpx.MockTransport(recorder), **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("status", "error_type", "expected"),
    [
        (400, "invalid_request_error", InvalidRequestError),
        (401, "authentication_error", AuthenticationError),
        (404, "not_found_error", RouteNotFoundError),
        (422, "invalid_request_error", InvalidRequestError),
        (501, "not_implemented", UnsupportedRouteTypeError),
        (502, "upstream_status_error", UpstreamStatusError),
        (504, "upstream_timeout", UpstreamTimeoutError),
        (400, "invalid_config", ConfigError),
    ],
)
def test_error_envelope_becomes_typed_error_with_server_message(
    status: int, error_type: str, expected: type[GatewayError]
) -> None:
    message = f"server says {status} {error_type}"
    recorder = Recorder(lambda request: envelope(status, message, error_type))
    with client_for(recorder) as client, pytest.raises(expected) as caught:
        client.query("chat", {"prompt": "x"})
    assert type(caught.value) is expected
    assert caught.value.message == message
    assert str(caught.value) == message
    assert caught.value.status_code == status


def test_rate_limit_carries_retry_after() -> None:
    response = envelope(429, "slow down", "rate_limit_error")
    response.headers["Retry-After"] = "7"
    recorder = Recorder().queue(response)
    with client_for(recorder) as client, pytest.raises(RateLimitError) as caught:
        client.query("chat", {"prompt": "x"})
    assert caught.value.retry_after == 7.0
    assert len(recorder.requests) == 1  # a 429 is not retried by the client either


def test_mlflow_style_detail_body_is_understood() -> None:
    detail = "The route 'x' is not present or active on the server. Please verify the route name."
    recorder = Recorder(lambda request: httpx.Response(404, json={"detail": detail}))
    with client_for(recorder) as client, pytest.raises(RouteNotFoundError, match="Please verify"):
        client.get_route("x")


def test_non_json_error_body_keeps_its_text() -> None:
    recorder = Recorder(lambda request: httpx.Response(502, text="<html>Bad Gateway from proxy</html>"))
    with client_for(recorder) as client, pytest.raises(UpstreamError, match="Bad Gateway from proxy"):
        client.get_route("chat")


def test_non_json_success_body_is_a_gateway_error() -> None:
    recorder = Recorder(lambda request: httpx.Response(200, text="not json"))
    with client_for(recorder) as client, pytest.raises(GatewayError, match="not JSON"):
        client.get_route("chat")


def test_route_in_an_unexpected_shape_is_a_gateway_error() -> None:
    recorder = Recorder(lambda request: httpx.Response(200, json={"name": "chat"}))
    with client_for(recorder) as client, pytest.raises(GatewayError, match="cannot read"):
        client.get_route("chat")


def test_errors_are_exported_from_the_package() -> None:
    assert gatewayctl.GatewayError is GatewayError
    assert issubclass(GatewayUnreachableError, GatewayError)
    assert issubclass(GatewayTimeoutError, GatewayUnreachableError)
    assert not issubclass(GatewayUnreachableError, UpstreamError)


def test_get_is_retried_after_connection_failures(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("gatewayctl.client.time.sleep", lambda seconds: None)
    request_error = httpx.ConnectError("[Errno 111] Connection refused")
    recorder = Recorder().queue(request_error, request_error, httpx.Response(200, json=route_json()))
    with client_for(recorder) as client:
        assert client.get_route("chat").name == "chat"
    assert len(recorder.requests) == 3


def test_get_gives_up_after_its_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("gatewayctl.client.time.sleep", lambda seconds: None)
    recorder = Recorder().queue(*[httpx.ConnectError("refused")] * 5)
    with client_for(recorder, retries=1) as client, pytest.raises(GatewayUnreachableError, match="refused"):
        client.get_route("chat")
    assert len(recorder.requests) == 2


def test_get_is_not_retried_after_a_timeout() -> None:
    recorder = Recorder().queue(httpx.ReadTimeout("timed out"), httpx.Response(200, json=route_json()))
    with client_for(recorder, timeout=3.0) as client, pytest.raises(GatewayTimeoutError, match="within 3 s"):
        client.get_route("chat")
    assert len(recorder.requests) == 1


@pytest.mark.parametrize(
    ("failure", "maybe_sent"),
    [
        (httpx.ConnectError("refused"), False),
        (httpx.ReadError("reset"), True),
        (httpx.RemoteProtocolError("dropped"), True),
    ],
)
def test_query_is_never_retried(failure: Exception, maybe_sent: bool) -> None:
    recorder = Recorder().queue(failure, httpx.Response(200, json={"candidates": []}))
    with client_for(recorder) as client, pytest.raises(GatewayUnreachableError) as caught:
        client.query("chat", {"prompt": "x"})
    assert len(recorder.requests) == 1
    assert str(failure) in caught.value.message
    assert ("may already have reached the provider" in caught.value.message) is maybe_sent


def test_query_timeout_says_it_was_not_retried() -> None:
    recorder = Recorder().queue(httpx.ReadTimeout("timed out"))
    with client_for(recorder, timeout=5.0) as client, pytest.raises(GatewayTimeoutError) as caught:
        client.query("chat", {"prompt": "x"})
    assert len(recorder.requests) == 1
    assert "within 5 s" in caught.value.message
    assert "may already have reached the provider" in caught.value.message


def test_create_and_delete_are_never_retried() -> None:
    recorder = Recorder().queue(httpx.ConnectError("refused"), httpx.ConnectError("refused"))
    with client_for(recorder) as client:
        with pytest.raises(GatewayUnreachableError):
            client.create_route("x", "llm/v1/chat", {"name": "m", "provider": "fake"})
        with pytest.raises(GatewayUnreachableError):
            client.delete_route("x")
    assert [request.method for request in recorder.requests] == ["POST", "DELETE"]


def test_unreachable_gateway_on_a_real_closed_port() -> None:
    from socket import socket

    with socket() as sock:  # bind, learn the port, close: nothing listens there afterwards
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with (
        GatewayClient(f"http://127.0.0.1:{port}", retries=0) as client,
        pytest.raises(GatewayUnreachableError, match=f"127.0.0.1:{port}"),
    ):
        client.query("chat", {"prompt": "x"})


def test_config_not_persistable_is_its_own_class_not_route_exists() -> None:
    from gatewayctl import ConfigNotPersistableError, RouteExistsError

    recorder = Recorder(lambda request: envelope(409, "cannot be persisted", "config_not_persistable"))
    with client_for(recorder) as client, pytest.raises(ConfigNotPersistableError) as caught:
        client.create_route("x", "llm/v1/chat", {"provider": "fake", "name": "m"})
    assert not isinstance(caught.value, RouteExistsError)


def test_documented_attributes_come_back_from_the_envelope() -> None:
    upstream = {
        "error": {
            "message": "openai returned HTTP 400: bad model",
            "type": "upstream_status_error",
            "code": 400,
            "provider": "openai",
            "upstream_status": 400,
            "reason": "bad model",
        }
    }
    recorder = Recorder(lambda request: httpx.Response(400, json=upstream))
    with client_for(recorder) as client, pytest.raises(UpstreamStatusError) as caught:
        client.query("chat", {"prompt": "x"})
    assert (caught.value.provider, caught.value.upstream_status, caught.value.reason) == (
        "openai",
        400,
        "bad model",
    )
    missing = {"error": {"message": "no route", "type": "not_found_error", "code": 404, "route": "chat"}}
    recorder = Recorder(lambda request: httpx.Response(404, json=missing))
    with client_for(recorder) as client, pytest.raises(RouteNotFoundError) as not_found:
        client.get_route("chat")
    assert not_found.value.name == "chat"
    invalid = {
        "error": {"message": "bad", "type": "invalid_request_error", "code": 400, "param": "temperature"}
    }
    recorder = Recorder(lambda request: httpx.Response(400, json=invalid))
    with client_for(recorder) as client, pytest.raises(InvalidRequestError) as bad:
        client.query("chat", {"prompt": "x"})
    assert bad.value.param == "temperature"
