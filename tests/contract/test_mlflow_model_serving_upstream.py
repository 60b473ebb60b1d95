"""The mlflow-model-serving adapter + the network module against a fake MLflow scoring server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from upstream_calls import call

from gateway_server.errors import UpstreamProtocolError, UpstreamStatusError, UpstreamTimeoutError
from gateway_server.providers.mlflow_model_serving import MlflowModelServingAdapter, MlflowModelServingConfig
from gateway_server.routes import RouteType
from gateway_server.testing import Fault
from gateway_server.testing.fake_mlflow_serving import FakeMlflowServing

pytestmark = pytest.mark.contract


@pytest.fixture(scope="module")
def fake_serving_server() -> Iterator[FakeMlflowServing]:
    with FakeMlflowServing().serve() as fake:
        yield fake


@pytest.fixture
def fake_serving(fake_serving_server: FakeMlflowServing) -> Iterator[FakeMlflowServing]:
    fake_serving_server.reset()
    fake_serving_server.task, fake_serving_server.predictions = "text", "list"
    yield fake_serving_server
    fake_serving_server.reset()


def _adapter(fake: FakeMlflowServing) -> MlflowModelServingAdapter:
    return MlflowModelServingAdapter(
        MlflowModelServingConfig.model_validate({"model_server_url": fake.url}), "m"
    )


def test_mlflow_serving_chat_request_and_answer(fake_serving: FakeMlflowServing) -> None:
    result = call(
        _adapter(fake_serving),
        RouteType.CHAT,
        {"messages": [{"role": "user", "content": "hi"}], "temperature": 0.1},
    )
    request = fake_serving.last_request
    assert (request.method, request.path) == ("POST", "/invocations")
    assert request.headers["content-type"] == "application/json"
    assert request.json == {"inputs": ["hi"], "params": {"temperature": 0.1}}
    assert result["choices"] == [
        {"index": 0, "message": {"role": "assistant", "content": "served: hi"}, "finish_reason": None}
    ]


@pytest.mark.parametrize("shape", ["list", "dict", "choices"])
def test_mlflow_serving_completions_in_each_predictions_shape(
    fake_serving: FakeMlflowServing, shape: str
) -> None:
    fake_serving.predictions = shape  # type: ignore[assignment]
    result = call(_adapter(fake_serving), RouteType.COMPLETIONS, {"prompt": ["a", "b"]})
    assert [choice["text"] for choice in result["choices"]] == ["served: a", "served: b"]


def test_mlflow_serving_embeddings(fake_serving: FakeMlflowServing) -> None:
    fake_serving.task = "embeddings"
    result = call(_adapter(fake_serving), RouteType.EMBEDDINGS, {"input": ["x", "y"]})
    assert fake_serving.last_request.json == {"inputs": ["x", "y"]}
    assert [len(item["embedding"]) for item in result["data"]] == [8, 8]


def test_mlflow_serving_text_model_on_an_embeddings_route_is_a_protocol_error(
    fake_serving: FakeMlflowServing,
) -> None:
    with pytest.raises(UpstreamProtocolError, match="non-empty number lists"):
        call(_adapter(fake_serving), RouteType.EMBEDDINGS, {"input": "x"})


def test_mlflow_serving_schema_error_passes_through(fake_serving: FakeMlflowServing) -> None:
    fake_serving.inject(
        Fault.error(400, {"error_code": "BAD_REQUEST", "message": "Failed to enforce schema"})
    )
    with pytest.raises(UpstreamStatusError) as caught:
        call(_adapter(fake_serving), RouteType.COMPLETIONS, {"prompt": "x"})
    assert caught.value.status_code == 400 and "Failed to enforce schema" in caught.value.message


@pytest.mark.parametrize(
    ("status", "gateway_status"), [(401, 502), (403, 502), (404, 404), (429, 429), (500, 502), (503, 502)]
)
def test_mlflow_serving_status_maps(
    fake_serving: FakeMlflowServing, status: int, gateway_status: int
) -> None:
    fake_serving.inject(Fault.error(status, headers={"Retry-After": "2"} if status == 429 else None))
    with pytest.raises(UpstreamStatusError) as caught:
        call(_adapter(fake_serving), RouteType.COMPLETIONS, {"prompt": "x"})
    assert caught.value.status_code == gateway_status
    if status == 429:
        assert caught.value.retry_after == 2


def test_mlflow_serving_timeout(fake_serving: FakeMlflowServing) -> None:
    fake_serving.inject(Fault.slow(2))
    with pytest.raises(UpstreamTimeoutError):
        call(_adapter(fake_serving), RouteType.COMPLETIONS, {"prompt": "x"}, timeout=0.3)
