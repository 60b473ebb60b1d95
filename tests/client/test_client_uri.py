"""Which gateway is used: argument, then set_gateway_uri(), then MLFLOW_GATEWAY_URI; and the fluent API."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from mock_gateway import Recorder, route_json

import gatewayctl
from gatewayctl import GatewayClient, GatewayUriError, get_gateway_uri, set_gateway_uri


def test_argument_beats_stored_uri_beats_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_GATEWAY_URI", "http://from-env:1")
    assert GatewayClient().gateway_uri == "http://from-env:1"
    assert get_gateway_uri() == "http://from-env:1"

    set_gateway_uri("http://from-set:2")
    assert GatewayClient().gateway_uri == "http://from-set:2"
    assert get_gateway_uri() == "http://from-set:2"

    assert GatewayClient("http://from-arg:3").gateway_uri == "http://from-arg:3"


def test_unset_uri_raises_the_mlflow_message() -> None:
    with pytest.raises(GatewayUriError, match=r"No Gateway server uri has been set\. Please either set"):
        get_gateway_uri()
    with pytest.raises(GatewayUriError, match="MLFLOW_GATEWAY_URI"):
        GatewayClient()


@pytest.mark.parametrize("bad", ["localhost:5000", "not a uri", "/just/a/path", "http://"])
def test_uri_without_scheme_and_host_is_rejected(bad: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(GatewayUriError, match="missing required elements"):
        set_gateway_uri(bad)
    with pytest.raises(GatewayUriError, match="missing required elements"):
        GatewayClient(bad)
    monkeypatch.setenv("MLFLOW_GATEWAY_URI", bad)
    with pytest.raises(GatewayUriError, match="missing required elements"):
        GatewayClient()


def test_databricks_is_a_valid_uri_but_not_one_this_client_speaks() -> None:
    set_gateway_uri("databricks")  # accepted, as MLflow does
    assert get_gateway_uri() == "databricks"
    with pytest.raises(GatewayUriError, match="http or https"):
        GatewayClient()


def test_a_rejected_uri_leaves_the_stored_one_unchanged() -> None:
    set_gateway_uri("http://good:1")
    with pytest.raises(GatewayUriError):
        set_gateway_uri("bad")
    assert get_gateway_uri() == "http://good:1"


@pytest.fixture
def fluent_recorder(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Recorder]:
    """Route the fluent functions' clients through a MockTransport."""

    def install(recorder: Recorder) -> Recorder:
        def client(*args: object, **kwargs: object) -> GatewayClient:
            return GatewayClient(*args, transport=httpx.MockTransport(recorder), **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr("gatewayctl.fluent.GatewayClient", client)
        return recorder

    return install


def test_fluent_search_routes_walks_all_pages(fluent_recorder: Callable[..., Recorder]) -> None:
    pages = {
        None: {"routes": [route_json("a"), route_json("b")], "next_page_token": "t2"},
        "t2": {"routes": [route_json("c")]},
    }
    recorder = fluent_recorder(
        Recorder(lambda request: httpx.Response(200, json=pages[request.url.params.get("page_token")]))
    )
    set_gateway_uri("http://fluent:9")
    routes = gatewayctl.search_routes()
    assert type(routes) is list
    assert [route.name for route in routes] == ["a", "b", "c"]
    assert routes[0].route_url == "http://fluent:9/gateway/a/invocations"
    assert [str(request.url) for request in recorder.requests] == [
        "http://fluent:9/api/2.0/gateway/routes/",
        "http://fluent:9/api/2.0/gateway/routes/?page_token=t2",
    ]


def test_fluent_functions_use_the_current_uri_and_env_key(
    fluent_recorder: Callable[..., Recorder], monkeypatch: pytest.MonkeyPatch
) -> None:
    def reply(request: httpx.Request) -> httpx.Response:
        if request.method == "DELETE":
            return httpx.Response(204)
        if request.url.path.startswith("/gateway/"):
            return httpx.Response(200, json={"candidates": [{"text": "ok"}]})
        return httpx.Response(200, json=route_json("r"))

    recorder = fluent_recorder(Recorder(reply))
    monkeypatch.setenv("MLFLOW_GATEWAY_URI", "http://env-gw:7")
    monkeypatch.setenv("GATEWAYCTL_API_KEY", "admin-key")

    assert gatewayctl.get_route("r").name == "r"
    assert gatewayctl.query("r", {"prompt": "p"}) == {"candidates": [{"text": "ok"}]}
    assert gatewayctl.create_route("r", "llm/v1/chat", {"name": "m", "provider": "fake"}).name == "r"
    assert gatewayctl.delete_route("r") is None

    assert [(request.method, request.url.path) for request in recorder.requests] == [
        ("GET", "/api/2.0/gateway/routes/r"),
        ("POST", "/gateway/r/invocations"),
        ("POST", "/api/2.0/gateway/routes/"),
        ("DELETE", "/api/2.0/gateway/routes/r"),
    ]
    assert {request.url.host for request in recorder.requests} == {"env-gw"}
    assert {request.headers["authorization"] for request in recorder.requests} == {"Bearer admin-key"}
