"""What GatewayClient puts on the wire and how it reads the answers (MLflow's client contract)."""

from __future__ import annotations

import httpx
import pytest
from mock_gateway import BASE, Recorder, route_json

from gatewayctl import GatewayClient, InvalidRequestError, MlflowGatewayClient, PagedList, Route, RouteType


def client_for(recorder: Recorder, uri: str = BASE, **kwargs: object) -> GatewayClient:
    return GatewayClient(uri, transport=httpx.MockTransport(recorder), **kwargs)  # type: ignore[arg-type]


def test_get_route_path_headers_and_absolute_route_url() -> None:
    recorder = Recorder(lambda request: httpx.Response(200, json=route_json("chat")))
    with client_for(recorder, api_key="k-123") as client:
        route = client.get_route("chat")

    request = recorder.last
    assert request.method == "GET"
    assert str(request.url) == f"{BASE}/api/2.0/gateway/routes/chat"
    assert request.headers["authorization"] == "Bearer k-123"
    assert request.headers["accept"] == "application/json"
    assert request.headers["user-agent"].startswith("gatewayctl/")
    assert isinstance(route, Route)
    assert route.route_type is RouteType.CHAT
    assert route.model.provider == "openai"
    assert route.route_url == f"{BASE}/gateway/chat/invocations"


@pytest.mark.parametrize(
    ("uri", "expected_prefix"),
    [
        ("http://gw:8080/", "http://gw:8080"),
        ("http://gw:8080/prefix", "http://gw:8080/prefix"),
        ("https://gw/prefix/", "https://gw/prefix"),
    ],
)
def test_uri_path_prefix_is_kept_for_requests_and_route_url(uri: str, expected_prefix: str) -> None:
    recorder = Recorder(lambda request: httpx.Response(200, json=route_json("chat")))
    with client_for(recorder, uri) as client:
        route = client.get_route("chat")
    assert str(recorder.last.url) == f"{expected_prefix}/api/2.0/gateway/routes/chat"
    assert route.route_url == f"{expected_prefix}/gateway/chat/invocations"


def test_route_url_that_is_already_absolute_is_kept() -> None:
    absolute = "https://elsewhere.example/gateway/chat/invocations"
    recorder = Recorder(lambda request: httpx.Response(200, json=route_json("chat", url=absolute)))
    with client_for(recorder) as client:
        assert client.get_route("chat").route_url == absolute


def test_dot_route_names_stay_one_path_segment() -> None:
    recorder = Recorder(lambda request: httpx.Response(200, json=route_json("..")))
    with client_for(recorder) as client:
        client.get_route("..")
    assert recorder.last.url.raw_path == b"/api/2.0/gateway/routes/%2E%2E"


def test_search_routes_returns_paged_list_with_token() -> None:
    recorder = Recorder().queue(
        httpx.Response(200, json={"routes": [route_json("a"), route_json("b")], "next_page_token": "tok-2"}),
        httpx.Response(200, json={"routes": [route_json("c")]}),
    )
    with client_for(recorder) as client:
        first = client.search_routes()
        second = client.search_routes(page_token=first.token)

    assert isinstance(first, PagedList)
    assert isinstance(first, list)
    assert [route.name for route in first] == ["a", "b"]
    assert first.token == "tok-2"
    assert first.to_list() == list(first)
    assert [route.name for route in second] == ["c"]
    assert second.token is None
    assert str(recorder.requests[0].url) == f"{BASE}/api/2.0/gateway/routes/"
    assert recorder.requests[1].url.params["page_token"] == "tok-2"
    assert all(route.route_url.startswith(BASE + "/gateway/") for route in [*first, *second])


def test_search_routes_sends_max_results() -> None:
    recorder = Recorder(lambda request: httpx.Response(200, json={"routes": []}))
    with client_for(recorder) as client:
        assert client.search_routes(max_results=2) == []
    assert dict(recorder.last.url.params) == {"max_results": "2"}


def test_list_routes_follows_every_page() -> None:
    pages = {
        None: {"routes": [route_json("a")], "next_page_token": "p2"},
        "p2": {"routes": [route_json("b")], "next_page_token": "p3"},
        "p3": {"routes": [route_json("c")]},
    }
    recorder = Recorder(lambda request: httpx.Response(200, json=pages[request.url.params.get("page_token")]))
    with client_for(recorder) as client:
        routes = client.list_routes()
    assert [route.name for route in routes] == ["a", "b", "c"]
    assert len(recorder.requests) == 3


def test_list_routes_stops_on_a_repeated_token() -> None:
    recorder = Recorder(lambda request: httpx.Response(200, json={"routes": [], "next_page_token": "same"}))
    with client_for(recorder) as client:
        client.list_routes()
    assert len(recorder.requests) == 2


def test_query_posts_data_to_invocations_and_returns_the_answer() -> None:
    answer = {"candidates": [{"message": {"role": "assistant", "content": "hi"}}], "metadata": {}}
    recorder = Recorder(lambda request: httpx.Response(200, json=answer))
    data = {"messages": [{"role": "user", "content": "hello"}], "temperature": 0.2}
    with client_for(recorder) as client:
        assert client.query("chat", data) == answer
    assert recorder.last.method == "POST"
    assert str(recorder.last.url) == f"{BASE}/gateway/chat/invocations"
    assert recorder.last.headers["content-type"] == "application/json"
    assert recorder.body() == data


def test_query_refuses_stream_in_data_without_stream_argument() -> None:
    recorder = Recorder()
    with client_for(recorder) as client, pytest.raises(InvalidRequestError, match="stream=True"):
        client.query("chat", {"prompt": "x", "stream": True})
    assert recorder.requests == []


def test_create_route_posts_the_definition() -> None:
    recorder = Recorder(lambda request: httpx.Response(200, json=route_json("new", "llm/v1/completions")))
    model = {"name": "gpt-4o-mini", "provider": "openai", "config": {"openai_api_key": "$OPENAI_API_KEY"}}
    with client_for(recorder, api_key="admin") as client:
        route = client.create_route("new", RouteType.COMPLETIONS, model)
    assert recorder.last.method == "POST"
    assert str(recorder.last.url) == f"{BASE}/api/2.0/gateway/routes/"
    assert recorder.body() == {"name": "new", "route_type": "llm/v1/completions", "model": model}
    assert recorder.last.headers["authorization"] == "Bearer admin"
    assert route.route_url == f"{BASE}/gateway/new/invocations"


def test_create_route_rejects_an_unknown_route_type_before_sending() -> None:
    recorder = Recorder()
    with client_for(recorder) as client, pytest.raises(InvalidRequestError, match="llm/v1/chat"):
        client.create_route("x", "llm/v1/images", {"name": "m", "provider": "openai"})
    assert recorder.requests == []


def test_delete_route_sends_delete_and_returns_none() -> None:
    recorder = Recorder(lambda request: httpx.Response(204))
    with client_for(recorder) as client:
        assert client.delete_route("old") is None
    assert recorder.last.method == "DELETE"
    assert str(recorder.last.url) == f"{BASE}/api/2.0/gateway/routes/old"


def test_api_key_from_environment_and_argument_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = Recorder(lambda request: httpx.Response(200, json=route_json()))
    monkeypatch.setenv("GATEWAYCTL_API_KEY", "from-env")
    with client_for(recorder) as client:
        client.get_route("chat")
    assert recorder.last.headers["authorization"] == "Bearer from-env"
    with client_for(recorder, api_key="from-arg") as client:
        client.get_route("chat")
    assert recorder.last.headers["authorization"] == "Bearer from-arg"


def test_no_authorization_header_without_a_key() -> None:
    recorder = Recorder(lambda request: httpx.Response(200, json=route_json()))
    with client_for(recorder) as client:
        client.get_route("chat")
    assert "authorization" not in recorder.last.headers


def test_repr_shows_the_uri_and_never_the_key() -> None:
    with GatewayClient(BASE, api_key="sk-very-secret") as client:
        assert repr(client) == f"GatewayClient(gateway_uri='{BASE}')"
        assert client.gateway_uri == BASE


def test_mlflow_name_is_the_same_class() -> None:
    assert MlflowGatewayClient is GatewayClient


def test_default_timeout_is_explicit_and_connect_is_bounded() -> None:
    with GatewayClient(BASE) as client:
        timeout = client._http.timeout
    assert timeout.read == 120.0
    assert timeout.connect == 10.0
