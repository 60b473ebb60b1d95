"""The error tree: one envelope, one status table, and a client-side round trip."""

from __future__ import annotations

import pytest

from gateway_server import errors


@pytest.mark.parametrize(
    ("upstream", "gateway"),
    [
        (400, 400),
        (404, 404),
        (422, 422),
        (429, 429),
        (401, 502),
        (403, 502),
        (500, 502),
        (503, 502),
        (529, 502),
    ],
)
def test_errors_upstream_status_table(upstream: int, gateway: int) -> None:
    assert errors.upstream_status_to_gateway(upstream) == gateway


def test_errors_envelope_shape() -> None:
    payload = errors.RouteNotFoundError("chat").to_payload()
    assert payload == {
        "error": {
            "message": "The route 'chat' is not present or active on the server. Please verify the route name.",
            "type": "not_found_error",
            "code": 404,
        },
        "detail": "The route 'chat' is not present or active on the server. Please verify the route name.",
    }


def test_errors_rate_limit_carries_retry_after() -> None:
    error = errors.UpstreamStatusError(
        provider="openai", upstream_status=429, reason="slow down", retry_after=2.2
    )
    assert error.status_code == 429
    assert error.headers() == {"Retry-After": "2"}
    assert "slow down" in error.message and "openai" in error.message


def test_errors_round_trip_through_payload() -> None:
    original = errors.UpstreamTimeoutError("openai did not answer within 1 s", provider="openai")
    rebuilt = errors.error_from_payload(504, original.to_payload())
    assert type(rebuilt) is errors.UpstreamTimeoutError
    assert rebuilt.message == original.message and rebuilt.status_code == 504
    limited = errors.error_from_payload(429, {"detail": "too many"}, {"retry-after": "3"})
    assert isinstance(limited, errors.RateLimitError) and limited.retry_after == 3.0
    unknown = errors.error_from_payload(418, "teapot")
    assert isinstance(unknown, errors.ClientRequestError) and unknown.status_code == 418


def test_errors_config_issue_format() -> None:
    issue = errors.ConfigIssue("bad", path="g.yaml", line=3, route="chat", field="model.name")
    assert str(issue) == "g.yaml:3: route 'chat': model.name: bad"
