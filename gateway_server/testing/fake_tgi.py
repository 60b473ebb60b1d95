"""A fake Hugging Face Text Generation Inference server (TGI 2.x router API).

Endpoints (``hf_server_url = fake.url``)::

    POST /generate               {"inputs", "parameters"} → {"generated_text", "details"?}
    POST /generate_stream        the same, answered as SSE: one token per event, details on the last
    POST /v1/chat/completions    the Messages API: OpenAI's shapes (FakeOpenAI's behaviour)

``/generate`` echoes ``inputs`` (cut by ``stop`` and ``max_new_tokens``, default 100 words);
``finish_reason`` is ``eos_token``, ``stop_sequence`` or ``length``, and a stream that ends on the
model's own end emits the special ``</s>`` token last, as TGI does. Parameters are checked as TGI
checks them (``temperature`` and ``top_p`` strictly inside their ranges, at most 4 ``stop``
sequences, no ``decoder_input_details`` when streaming), answering 422 with TGI's envelope
``{"error": ..., "error_type": "validation"}``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from gateway_server.testing._fake_text import count_tokens, truncate, words
from gateway_server.testing.fake_openai import FakeOpenAI
from gateway_server.testing.fake_upstreams import RecordedRequest, Reply, Route, Stream, sse

__all__ = ["FakeTGI"]

_FINISH = {"end": "eos_token", "stop": "stop_sequence", "length": "length"}
_ERROR_TYPES = {422: "validation", 424: "generation", 429: "overloaded", 500: "incomplete_generation"}
_EOS = {"id": 2, "text": "</s>", "logprob": -0.01, "special": True}


class FakeTGI(FakeOpenAI):
    name = "huggingface-text-generation-inference"

    def __init__(self, **options: Any) -> None:
        super().__init__(prefix="/v1", **options)

    def routes(self) -> Iterator[Route]:
        yield Route("POST", "/generate", self.generate)
        yield Route("POST", "/generate_stream", self.generate_stream)
        yield Route("POST", "/v1/chat/completions", self.chat)

    def error_body(self, status: int, message: str) -> Any:
        return {"error": message, "error_type": _ERROR_TYPES.get(status, "error")}

    def generate(self, request: RecordedRequest) -> Reply:
        checked = self._checked(request, streaming=False)
        if isinstance(checked, Reply):
            return checked
        inputs, parameters = checked
        ending = truncate(inputs, parameters.get("stop"), parameters.get("max_new_tokens", 100))
        answer: dict[str, Any] = {"generated_text": ending.text}
        if parameters.get("details"):
            generated = words(ending.text)
            answer["details"] = {
                "finish_reason": _FINISH[ending.reason],
                "generated_tokens": len(generated) + (ending.reason == "end"),
                "seed": parameters.get("seed"),
                "prefill": [
                    {"id": index, "text": word, "logprob": None if index == 0 else -0.5}
                    for index, word in enumerate(words(inputs))
                ]
                if parameters.get("decoder_input_details")
                else [],
                "tokens": [_token(index, word) for index, word in enumerate(generated)],
            }
        return Reply(200, answer)

    def generate_stream(self, request: RecordedRequest) -> Reply | Stream:
        checked = self._checked(request, streaming=True)
        if isinstance(checked, Reply):
            return checked
        inputs, parameters = checked
        ending = truncate(inputs, parameters.get("stop"), parameters.get("max_new_tokens", 100))
        tokens = [_token(index, word) for index, word in enumerate(words(ending.text))]
        if ending.reason == "end":
            tokens.append(_EOS)
        events = []
        for index, token in enumerate(tokens, start=1):
            event: dict[str, Any] = {"index": index, "token": token, "generated_text": None, "details": None}
            if index == len(tokens):
                event["generated_text"] = ending.text
                event["details"] = {
                    "finish_reason": _FINISH[ending.reason],
                    "generated_tokens": len(tokens),
                    "input_length": count_tokens(inputs),
                    "seed": parameters.get("seed"),
                }
            events.append(sse(event))
        return Stream(events)

    def _checked(self, request: RecordedRequest, *, streaming: bool) -> tuple[str, dict[str, Any]] | Reply:
        body = request.json
        if not isinstance(body, dict) or not isinstance(body.get("inputs"), str):
            return self._invalid(
                "Failed to deserialize the JSON body into the target type: missing field `inputs`"
            )
        if not body["inputs"]:
            return self._invalid("Input validation error: `inputs` cannot be empty")
        parameters = body.get("parameters") or {}
        temperature, top_p = parameters.get("temperature"), parameters.get("top_p")
        if temperature is not None and temperature <= 0:
            return self._invalid("Input validation error: `temperature` must be strictly positive")
        if top_p is not None and not 0 < top_p < 1:
            return self._invalid("Input validation error: `top_p` must be > 0.0 and < 1.0")
        if len(parameters.get("stop") or ()) > 4:
            return self._invalid("Input validation error: `stop` supports up to 4 stop sequences.")
        if streaming and parameters.get("decoder_input_details"):
            return self._invalid(
                "Input validation error: `decoder_input_details` == true is not supported when streaming tokens"
            )
        return body["inputs"], parameters

    def _invalid(self, message: str) -> Reply:
        return Reply(422, self.error_body(422, message))


def _token(index: int, text: str) -> dict[str, Any]:
    return {"id": 100 + index, "text": text, "logprob": -0.25, "special": False}
