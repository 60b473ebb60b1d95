"""Our gateway answers the real MLflow 2.8.1 client (``mlflow.gateway``) on the wire.

Each test runs a short script with MLflow's own client in its own venv (``mlflow_support``) against
the gateway process of ``compat_gateway`` and asserts on what the client returned or raised:
routes (client and fluent, paged), one route, queries of the three route types in the seed-era
shapes, and errors as MLflow's client surfaces them (``requests.HTTPError`` carrying our message).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from compat_routes import (
    API_KEY,
    CHAT_MODEL,
    COMPLETIONS_MODEL,
    EMBEDDINGS_MODEL,
    PAGE_SIZE,
    ROUTES,
    route_names,
)
from mlflow_support import BUILD_TIMEOUT

from gateway_server.testing import FakeOpenAI, Fault, count_tokens, fake_embedding
from gateway_server.testing.process import GatewayProcess

# The first test may build the venv (cached afterwards): its time counts against the test timeout.
pytestmark = [pytest.mark.compat, pytest.mark.timeout(BUILD_TIMEOUT + 180)]

Mlflow = Callable[..., Any]

QUESTION = "what is the capital of France"
PROMPT = "one small step for"
TEXTS = ["it was the best of times", "it was the worst of times"]


def expected_route(gateway: GatewayProcess, name: str) -> dict[str, Any]:
    route_type, model = ROUTES.get(name, ("llm/v1/chat", CHAT_MODEL))
    return {
        "__class__": "mlflow.gateway.config.Route",
        "name": name,
        "route_type": route_type,
        "model": {"name": model, "provider": "openai"},
        "route_url": f"{gateway.url}/gateway/{name}/invocations",
    }


# ------------------------------------------------------------------ routes


def test_client_search_routes_pages(mlflow: Mlflow, compat_gateway: GatewayProcess) -> None:
    result = mlflow(
        """
        client = MlflowGatewayClient()  # the URI from MLFLOW_GATEWAY_URI
        first = client.search_routes()
        second = client.search_routes(page_token=first.token)
        emit({
            "types": [type(first).__name__, type(second).__name__],
            "first": [route_data(r) for r in first[:5]],
            "first_names": [r.name for r in first],
            "first_token": first.token,
            "second_names": [r.name for r in second],
            "second_token": second.token,
        })
        """
    )
    names = route_names()
    assert result["types"] == ["PagedList", "PagedList"]
    assert result["first_names"] == names[:PAGE_SIZE]
    assert result["first_token"]
    assert result["second_names"] == names[PAGE_SIZE:]
    assert result["second_token"] is None
    assert result["first"] == [expected_route(compat_gateway, name) for name in names[:5]]


def test_fluent_search_routes_walks_every_page(mlflow: Mlflow, compat_gateway: GatewayProcess) -> None:
    result = mlflow(
        f"""
        set_gateway_uri({compat_gateway.url!r})
        routes = search_routes()
        emit({{"type": type(routes).__name__, "names": [r.name for r in routes],
               "urls": sorted({{r.route_url.rsplit("/gateway/", 1)[0] for r in routes}}),
               "last": route_data(routes[-1])}})
        """,
        gateway_url=None,  # set_gateway_uri() alone must be enough
    )
    names = route_names()
    assert result["type"] == "list"
    assert result["names"] == names  # more than one page, in order, nothing twice
    assert result["urls"] == [compat_gateway.url]  # every route_url absolute, on our server
    assert result["last"] == expected_route(compat_gateway, names[-1])


@pytest.mark.parametrize("name", ["chat", "completions", "embeddings"])
def test_get_route(mlflow: Mlflow, compat_gateway: GatewayProcess, name: str) -> None:
    result = mlflow(
        f"""
        emit({{"client": route_data(MlflowGatewayClient({compat_gateway.url!r}).get_route({name!r})),
               "fluent": route_data(get_route({name!r}))}})
        """
    )
    assert result["client"] == expected_route(compat_gateway, name)
    assert result["fluent"] == expected_route(compat_gateway, name)


# ------------------------------------------------------------------ queries


def test_query_chat(mlflow: Mlflow, fake_openai: FakeOpenAI) -> None:
    data = {"messages": [{"role": "user", "content": QUESTION}]}
    result = mlflow(
        f"""
        data = {data!r}
        emit({{"client": MlflowGatewayClient().query("chat", data), "fluent": query("chat", data)}})
        """
    )
    tokens = count_tokens(QUESTION)
    expected = {
        "candidates": [
            {"message": {"role": "assistant", "content": QUESTION}, "metadata": {"finish_reason": "stop"}}
        ],
        "metadata": {
            "input_tokens": tokens,
            "output_tokens": tokens,
            "total_tokens": 2 * tokens,
            "model": CHAT_MODEL,
            "route_type": "llm/v1/chat",
        },
    }
    assert result == {"client": expected, "fluent": expected}
    assert len(fake_openai.requests) == 2
    upstream = fake_openai.last_request
    assert upstream.path == "/v1/chat/completions"
    assert upstream.headers["authorization"] == f"Bearer {API_KEY}"
    assert upstream.json == {"model": CHAT_MODEL, **data}


def test_query_chat_with_seed_parameters(mlflow: Mlflow, fake_openai: FakeOpenAI) -> None:
    data = {
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": QUESTION}],
        "temperature": 0.3,
        "candidate_count": 2,
        "max_tokens": 3,
        "stop": ["\n\n"],
    }
    result = mlflow(f'emit(query("chat", {data!r}))')
    cut = " ".join(QUESTION.split()[:3])
    candidate = {"message": {"role": "assistant", "content": cut}, "metadata": {"finish_reason": "length"}}
    assert result["candidates"] == [candidate, candidate]
    assert result["metadata"]["output_tokens"] == 6
    assert fake_openai.last_request.json == {
        "model": CHAT_MODEL,
        "messages": data["messages"],
        "temperature": 0.3,
        "n": 2,
        "max_tokens": 3,
        "stop": ["\n\n"],
    }


def test_query_completions(mlflow: Mlflow, fake_openai: FakeOpenAI) -> None:
    result = mlflow(f'emit(query("completions", {{"prompt": {PROMPT!r}, "max_tokens": 50}}))')
    tokens = count_tokens(PROMPT)
    assert result == {
        "candidates": [{"text": PROMPT, "metadata": {"finish_reason": "stop"}}],
        "metadata": {
            "input_tokens": tokens,
            "output_tokens": tokens,
            "total_tokens": 2 * tokens,
            "model": COMPLETIONS_MODEL,
            "route_type": "llm/v1/completions",
        },
    }
    assert fake_openai.last_request.json == {"model": COMPLETIONS_MODEL, "prompt": PROMPT, "max_tokens": 50}


@pytest.mark.parametrize("text", [TEXTS, TEXTS[0]], ids=["list", "string"])
def test_query_embeddings(mlflow: Mlflow, fake_openai: FakeOpenAI, text: str | list[str]) -> None:
    result = mlflow(f'emit(query("embeddings", {{"text": {text!r}}}))')
    texts = text if isinstance(text, list) else [text]
    tokens = sum(count_tokens(t) for t in texts)
    assert result == {
        "embeddings": [fake_embedding(t) for t in texts],
        "metadata": {
            "input_tokens": tokens,
            "output_tokens": 0,
            "total_tokens": tokens,
            "model": EMBEDDINGS_MODEL,
            "route_type": "llm/v1/embeddings",
        },
    }
    assert fake_openai.last_request.json == {"model": EMBEDDINGS_MODEL, "input": text}


# ------------------------------------------------------------------ errors


def _http_error(outcome: dict[str, Any], status: int) -> dict[str, Any]:
    assert outcome["ok"] is False, outcome
    error = outcome["error"]
    assert "requests.exceptions.HTTPError" in error["bases"], error
    assert error["status"] == status, error
    return error


def test_unknown_route_raises_with_our_message(mlflow: Mlflow, fake_openai: FakeOpenAI) -> None:
    result = mlflow(
        """
        client = MlflowGatewayClient()
        emit({
            "query": attempt(client.query, "no-such-route", {"prompt": "hi"}),
            "fluent_query": attempt(query, "no-such-route", {"prompt": "hi"}),
            "get_route": attempt(client.get_route, "no-such-route"),
        })
        """
    )
    message = (
        "The route 'no-such-route' is not present or active on the server. Please verify the route name."
    )
    for outcome in result.values():
        error = _http_error(outcome, 404)
        assert error["message"].startswith("404 Client Error")
        assert message in error["message"]  # MLflow appends the response text to the HTTPError
    assert fake_openai.requests == []


def test_invalid_request_raises_naming_the_field(mlflow: Mlflow, fake_openai: FakeOpenAI) -> None:
    result = mlflow(
        """
        emit(attempt(query, "chat", {"messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}))
        """
    )
    error = _http_error(result, 400)
    assert "Invalid value for 'temperature'" in error["message"]
    assert fake_openai.requests == []


def test_upstream_failure_raises_with_the_providers_reason(mlflow: Mlflow, fake_openai: FakeOpenAI) -> None:
    fake_openai.inject(
        Fault.error(500, {"error": {"message": "The server had an error", "type": "server_error"}})
    )
    result = mlflow('emit(attempt(query, "failing-chat", {"messages": [{"role": "user", "content": "hi"}]}))')
    error = _http_error(result, 502)
    assert "openai returned HTTP 500: The server had an error" in error["message"]
    assert len(fake_openai.requests) == 1


def test_create_and_delete_route_stay_databricks_only(mlflow: Mlflow) -> None:
    """MLflow 2.8.1 refuses these outside Databricks before any request: our server never sees them."""
    result = mlflow(
        """
        client = MlflowGatewayClient()
        emit({"create": attempt(client.create_route, "x", "llm/v1/chat", {"name": "m", "provider": "openai"}),
              "delete": attempt(client.delete_route, "chat")})
        """
    )
    for outcome in result.values():
        assert outcome["ok"] is False
        assert outcome["error"]["type"] == "mlflow.exceptions.MlflowException"
        assert "only available when running within Databricks" in outcome["error"]["message"]


# ------------------------------------------------------------------ deployments client


def test_deployments_client(mlflow: Mlflow, compat_gateway: GatewayProcess, fake_openai: FakeOpenAI) -> None:
    """MLflow 2.9 added ``get_deploy_client("http://...")`` for the gateway; 2.8.1 has only the plugin
    mechanism, which has no ``http`` target. If a client comes back anyway, predict must work."""
    result = mlflow(
        f"""
        import mlflow.deployments
        emit({{
            "has_get_deploy_client": hasattr(mlflow.deployments, "get_deploy_client"),
            "client": attempt(lambda: type(mlflow.deployments.get_deploy_client({compat_gateway.url!r})).__name__),
        }})
        """
    )
    client = result["client"]
    if result["has_get_deploy_client"] and not client["ok"]:
        assert client["error"]["type"] == "mlflow.exceptions.MlflowException"
        assert 'No plugin found for managing model deployments to "http"' in client["error"]["message"]
        return
    assert result["has_get_deploy_client"] and client["ok"], result  # a 2.9+ client: predict must work
    data = {"messages": [{"role": "user", "content": QUESTION}]}
    answer = mlflow(
        f"""
        import mlflow.deployments
        emit(mlflow.deployments.get_deploy_client({compat_gateway.url!r}).predict(endpoint="chat", inputs={data!r}))
        """
    )
    assert answer["object"] == "chat.completion"
    assert answer["choices"][0]["message"] == {"role": "assistant", "content": QUESTION}
