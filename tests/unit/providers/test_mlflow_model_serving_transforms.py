"""MLflow model serving: MLflow's /invocations request shapes and the ``predictions`` answers (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from gateway_server.errors import InvalidRequestError, UpstreamProtocolError
from gateway_server.providers import get_adapter_class
from gateway_server.providers.mlflow_model_serving import MlflowModelServingAdapter, MlflowModelServingConfig
from gateway_server.routes import RouteType


def _adapter() -> MlflowModelServingAdapter:
    config = MlflowModelServingConfig.model_validate({"model_server_url": "http://127.0.0.1:5001/"})
    return MlflowModelServingAdapter(config, "my-model")


def test_mlflow_serving_registered_under_mlflow_name() -> None:
    assert get_adapter_class("mlflow-model-serving") is MlflowModelServingAdapter
    assert get_adapter_class("MLFLOW_MODEL_SERVING") is MlflowModelServingAdapter


def test_mlflow_serving_chat_request_sends_the_message_content() -> None:
    request = _adapter().build_chat_request(
        {"messages": [{"role": "user", "content": "What is MLflow?"}], "temperature": 0.2, "max_tokens": None}
    )
    assert request.url == "http://127.0.0.1:5001/invocations"
    assert dict(request.headers) == {"Content-Type": "application/json"}
    assert request.body == {"inputs": ["What is MLflow?"], "params": {"temperature": 0.2}}


def test_mlflow_serving_chat_takes_one_message() -> None:
    with pytest.raises(InvalidRequestError, match="one message per chat request") as caught:
        _adapter().build_chat_request(
            {"messages": [{"role": "system", "content": "a"}, {"role": "user", "content": "b"}]}
        )
    assert caught.value.param == "messages"


@pytest.mark.parametrize(
    ("route_type", "payload", "body"),
    [
        (RouteType.COMPLETIONS, {"prompt": "hi", "n": 1}, {"inputs": ["hi"], "params": {"n": 1}}),
        (RouteType.COMPLETIONS, {"prompt": ["a", "b"]}, {"inputs": ["a", "b"]}),
        (RouteType.EMBEDDINGS, {"input": "x"}, {"inputs": ["x"]}),
        (
            RouteType.EMBEDDINGS,
            {"input": ["x", "y"], "output_value": "token_embeddings"},
            {"inputs": ["x", "y"], "params": {"output_value": "token_embeddings"}},
        ),
    ],
)
def test_mlflow_serving_requests(
    route_type: RouteType, payload: dict[str, Any], body: dict[str, Any]
) -> None:
    assert _adapter().build_request(route_type, payload).body == body


@pytest.mark.parametrize(
    "predictions", [["a", "b"], {"output": ["a", "b"]}, {"choices": ["a", "b"], "usage": {}}]
)
def test_mlflow_serving_parse_completions_accepts_mlflows_shapes(predictions: Any) -> None:
    assert _adapter().parse_response(RouteType.COMPLETIONS, {"predictions": predictions}) == {
        "object": "text_completion",
        "model": "my-model",
        "choices": [
            {"index": 0, "text": "a", "finish_reason": None},
            {"index": 1, "text": "b", "finish_reason": None},
        ],
        "usage": {"prompt_tokens": None, "completion_tokens": None, "total_tokens": None},
    }


def test_mlflow_serving_parse_chat() -> None:
    assert _adapter().parse_response(RouteType.CHAT, {"predictions": ["answer"]}) == {
        "object": "chat.completion",
        "model": "my-model",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "answer"}, "finish_reason": None}
        ],
        "usage": {"prompt_tokens": None, "completion_tokens": None, "total_tokens": None},
    }


def test_mlflow_serving_parse_embeddings_list_or_flat_vector() -> None:
    expected = {
        "object": "list",
        "model": "my-model",
        "data": [{"object": "embedding", "index": 0, "embedding": [0.5, -1.0]}],
        "usage": {"prompt_tokens": None, "total_tokens": None},
    }
    assert _adapter().parse_response(RouteType.EMBEDDINGS, {"predictions": [[0.5, -1.0]]}) == expected
    assert _adapter().parse_response(RouteType.EMBEDDINGS, {"predictions": [0.5, -1.0]}) == expected


@pytest.mark.parametrize(
    ("route_type", "body", "message"),
    [
        (RouteType.CHAT, {"outputs": ["x"]}, "no 'predictions' key"),
        (RouteType.CHAT, {"predictions": []}, "empty"),
        (RouteType.CHAT, {"predictions": {"a": [], "b": []}}, "several keys"),
        (RouteType.COMPLETIONS, {"predictions": [1, 2]}, "not all strings"),
        (RouteType.EMBEDDINGS, {"predictions": [[], [1.0]]}, "non-empty number lists"),
        (RouteType.EMBEDDINGS, {"predictions": [["a"]]}, "non-empty number lists"),
    ],
)
def test_mlflow_serving_refuses_other_shapes(
    route_type: RouteType, body: dict[str, Any], message: str
) -> None:
    with pytest.raises(UpstreamProtocolError, match=message):
        _adapter().parse_response(route_type, body)


def test_mlflow_serving_does_not_stream() -> None:
    with pytest.raises(InvalidRequestError):
        _adapter().build_stream_request(RouteType.CHAT, {"messages": [{"role": "user", "content": "x"}]})
