"""The error tree: one envelope, one status table, and a client-side round trip."""

from __future__ import annotations

import pytest

from gateway_server import errors
from gatewayctl._envelope import error_from_payload


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
            "route": "chat",
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
    rebuilt = error_from_payload(504, original.to_payload())
    assert type(rebuilt) is errors.UpstreamTimeoutError
    assert rebuilt.message == original.message and rebuilt.status_code == 504
    limited = error_from_payload(429, {"detail": "too many"}, {"retry-after": "3"})
    assert isinstance(limited, errors.RateLimitError) and limited.retry_after == 3.0
    unknown = error_from_payload(418, "teapot")
    assert isinstance(unknown, errors.ClientRequestError) and unknown.status_code == 418


def test_errors_config_issue_format() -> None:
    issue = errors.ConfigIssue("bad", path="g.yaml", line=3, route="chat", field="model.name")
    assert str(issue) == "g.yaml:3: route 'chat': model.name: bad"


def _round_trip(error: errors.GatewayError) -> errors.GatewayError:
    rebuilt = error_from_payload(error.status_code, error.to_payload(), error.headers())
    assert type(rebuilt) is type(error)
    assert rebuilt.message == error.message and rebuilt.status_code == error.status_code
    return rebuilt


def test_errors_upstream_status_keeps_provider_status_and_reason() -> None:
    rebuilt = _round_trip(
        errors.UpstreamStatusError(provider="openai", upstream_status=429, reason="slow down", retry_after=3)
    )
    assert isinstance(rebuilt, errors.UpstreamStatusError)
    assert (rebuilt.provider, rebuilt.upstream_status, rebuilt.reason) == ("openai", 429, "slow down")
    assert rebuilt.retry_after == 3.0


def test_errors_named_fields_survive_the_envelope() -> None:
    missing = _round_trip(errors.RouteNotFoundError("chat", noun="endpoint"))
    assert isinstance(missing, errors.RouteNotFoundError) and missing.name == "chat"
    exists = _round_trip(errors.RouteExistsError("chat"))
    assert isinstance(exists, errors.RouteExistsError) and exists.name == "chat"
    invalid = _round_trip(errors.InvalidRequestError("bad temperature", param="temperature", status_code=422))
    assert isinstance(invalid, errors.InvalidRequestError) and invalid.param == "temperature"
    unsupported = _round_trip(errors.UnsupportedRouteTypeError("cohere", "llm/v1/embeddings"))
    assert isinstance(unsupported, errors.UnsupportedRouteTypeError)
    assert (unsupported.provider, unsupported.route_type) == ("cohere", "llm/v1/embeddings")
    config = _round_trip(
        errors.ConfigError([errors.ConfigIssue("bad", path="g.yaml", line=3, route="r", field="f")])
    )
    assert isinstance(config, errors.ConfigError)
    assert config.issues == [errors.ConfigIssue("bad", path="g.yaml", line=3, route="r", field="f")]
    secret = _round_trip(errors.SecretNotFoundError("OPENAI_API_KEY"))
    assert isinstance(secret, errors.SecretNotFoundError) and secret.variable == "OPENAI_API_KEY"


def test_errors_config_not_persistable_is_its_own_class() -> None:
    rebuilt = _round_trip(errors.ConfigNotPersistableError())
    assert not isinstance(rebuilt, errors.RouteExistsError)


def test_errors_circuit_open_round_trips() -> None:
    rebuilt = _round_trip(errors.CircuitOpenError("paused", provider="openai"))
    assert isinstance(rebuilt, errors.CircuitOpenError) and rebuilt.provider == "openai"


def test_errors_from_a_server_that_sends_no_fields_still_have_their_attributes() -> None:
    # MLflow's gateway sends only {"detail": ...}: the documented attributes exist all the same.
    detail = "The route 'chat' is not present or active on the server. Please verify the route name."
    missing = error_from_payload(404, {"detail": detail})
    assert isinstance(missing, errors.RouteNotFoundError) and missing.name == "chat"
    upstream = error_from_payload(502, {"error": {"message": "boom", "type": "upstream_status_error"}})
    assert isinstance(upstream, errors.UpstreamStatusError)
    assert upstream.provider == "" and upstream.upstream_status == 0 and upstream.reason == "boom"
    invalid = error_from_payload(400, {"detail": "bad"})
    assert isinstance(invalid, errors.InvalidRequestError) and invalid.param is None


def test_errors_pickle_keeps_every_attribute() -> None:
    import pickle

    error = errors.UpstreamStatusError(provider="openai", upstream_status=400, reason="bad")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is errors.UpstreamStatusError
    assert (copy.provider, copy.upstream_status, copy.reason, copy.message) == (
        "openai",
        400,
        "bad",
        error.message,
    )
    missing = pickle.loads(pickle.dumps(errors.RouteNotFoundError("chat")))
    assert missing.name == "chat" and str(missing) == str(errors.RouteNotFoundError("chat"))
