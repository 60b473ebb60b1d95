"""A fake MLflow scoring server (``mlflow models serve``): ``POST /invocations``, ``GET /ping``.

One server serves one model, so the fake is told what it serves: ``task="text"`` (each string input
is answered by ``reply_prefix`` + the input, as a text model would) or ``task="embeddings"`` (each
input becomes :func:`fake_embedding`). ``predictions`` sets the answer's shape: ``"list"``
(``{"predictions": [...]}``), ``"dict"`` (``{"predictions": {"output": [...]}}``) or ``"choices"``
(``{"predictions": {"choices": [...], "usage": ...}}``). Like MLflow's server it wants exactly one
of ``inputs``, ``instances``, ``dataframe_split`` or ``dataframe_records`` and answers errors as
``{"error_code": "BAD_REQUEST", "message": ...}``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

from gateway_server.testing._fake_text import fake_embedding
from gateway_server.testing.fake_upstreams import FakeUpstream, RecordedRequest, Reply, Route

__all__ = ["FakeMlflowServing"]

_INPUT_FORMATS = ("inputs", "instances", "dataframe_split", "dataframe_records")


class FakeMlflowServing(FakeUpstream):
    name = "mlflow-model-serving"

    def __init__(
        self,
        *,
        task: Literal["text", "embeddings"] = "text",
        predictions: Literal["list", "dict", "choices"] = "list",
        reply_prefix: str = "served: ",
        embedding_dimensions: int = 8,
    ) -> None:
        self.task = task
        self.predictions = predictions
        self.reply_prefix = reply_prefix
        self.embedding_dimensions = embedding_dimensions
        super().__init__()

    def routes(self) -> Iterator[Route]:
        yield Route("POST", "/invocations", self.invocations)
        yield Route("GET", "/ping", lambda request: Reply(200, "\n", content_type="application/json"))

    def error_body(self, status: int, message: str) -> Any:
        code = "BAD_REQUEST" if status < 500 else "INTERNAL_ERROR"
        return {"error_code": code, "message": message}

    def invocations(self, request: RecordedRequest) -> Reply:
        body = request.json
        given = [key for key in _INPUT_FORMATS if isinstance(body, dict) and key in body]
        if len(given) != 1:
            message = (
                "The input must be a JSON dictionary with exactly one of the input fields "
                f"{set(_INPUT_FORMATS)}. Received dictionary with input fields: {given}."
            )
            return Reply(400, self.error_body(400, message))
        inputs = body[given[0]]
        if not isinstance(inputs, list) or not all(isinstance(item, str) for item in inputs):
            return Reply(
                400, self.error_body(400, "Failed to enforce schema: inputs must be a list of strings")
            )
        if self.task == "embeddings":
            outputs: list[Any] = [fake_embedding(text, self.embedding_dimensions) for text in inputs]
        else:
            outputs = [f"{self.reply_prefix}{text}" for text in inputs]
        if self.predictions == "dict":
            return Reply(200, {"predictions": {"output": outputs}})
        if self.predictions == "choices":
            return Reply(200, {"predictions": {"choices": outputs, "usage": {}}})
        return Reply(200, {"predictions": outputs})
