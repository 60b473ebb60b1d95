"""Mistral: the exact chat/embeddings requests and the parsed answers and stream chunks (pure)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from pydantic import ValidationError

from gateway_server.config import load_config
from gateway_server.errors import InvalidRequestError, UpstreamStatusError
from gateway_server.providers import get_adapter_class
from gateway_server.providers.mistral import MistralAdapter, MistralConfig, mistral_call_id
from gateway_server.providers.streaming import StreamEvent
from gateway_server.routes import RouteType

SAMPLE = Path(__file__).parents[3] / "sample-configs" / "mistral.yaml"
TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}


def _adapter(**config: str) -> MistralAdapter:
    return MistralAdapter(
        MistralConfig.model_validate({"mistral_api_key": "mi-test", **config}), "mistral-large"
    )


def _events(route_type: RouteType, events: list[dict | str]) -> list[dict]:
    adapter, state, chunks = _adapter(), {}, []
    for data in events:
        text = data if isinstance(data, str) else orjson.dumps(data).decode()
        chunks += adapter.parse_stream_event(route_type, StreamEvent(text), state)
    return chunks


def test_mistral_build_chat_request_passes_openai_fields_and_renames_the_rest() -> None:
    payload = {
        "messages": [{"role": "developer", "content": "Be brief."}, {"role": "user", "content": "hi"}],
        "temperature": 0.3,
        "top_p": 0.9,
        "max_completion_tokens": 50,
        "seed": 11,
        "stop": ["END"],
        "n": 2,
        "tools": [TOOL],
        "tool_choice": "required",
        "response_format": {"type": "json_object"},
        "stream_options": {"include_usage": True},
        "safe_prompt": True,
    }
    request = _adapter().build_chat_request(payload)
    assert request.url == "https://api.mistral.ai/v1/chat/completions"
    assert dict(request.headers) == {
        "Authorization": "Bearer mi-test",
        "Content-Type": "application/json",
        "Accept": "application/json",
    }
    assert request.body == {
        "model": "mistral-large",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
        "temperature": 0.3,
        "top_p": 0.9,
        "stop": ["END"],
        "n": 2,
        "tools": [TOOL],
        "tool_choice": "required",
        "response_format": {"type": "json_object"},
        "safe_prompt": True,
        "max_tokens": 50,
        "random_seed": 11,
    }
    assert payload["messages"][0]["role"] == "developer"  # the caller's dict is not modified


@pytest.mark.parametrize(
    ("extra", "param"), [({"logit_bias": {"1": 1}}, "logit_bias"), ({"user": "u"}, "user")]
)
def test_mistral_refuses_parameters_without_equivalent(extra: dict, param: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        _adapter().build_chat_request({"messages": [{"role": "user", "content": "x"}], **extra})
    assert info.value.param == param


def test_mistral_completions_and_embeddings_requests() -> None:
    adapter = _adapter()
    assert adapter.build_completions_request({"prompt": "p", "max_tokens": 3}).body == {
        "model": "mistral-large",
        "max_tokens": 3,
        "messages": [{"role": "user", "content": "p"}],
    }
    request = adapter.build_embeddings_request({"input": ["a"], "dimensions": 64, "encoding_format": "float"})
    assert request.url == "https://api.mistral.ai/v1/embeddings"
    assert request.body == {
        "model": "mistral-large",
        "input": ["a"],
        "encoding_format": "float",
        "output_dimension": 64,
    }


def test_mistral_parse_chat_response_normalises_content_chunks_and_tool_calls() -> None:
    body = {
        "id": "c1",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "mistral-large-2411",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": [{"type": "thinking", "thinking": []}, {"type": "text", "text": "Hi"}],
                    "tool_calls": None,
                },
                "finish_reason": "model_length",
            },
            {
                "index": 1,
                "message": {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [
                        {"id": "abcDEF123", "function": {"name": "f", "arguments": {"a": 1}}, "index": 0}
                    ],
                },
                "finish_reason": "tool_calls",
            },
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
    }
    assert _adapter().parse_response(RouteType.CHAT, body) == {
        "id": "c1",
        "object": "chat.completion",
        "model": "mistral-large-2411",
        "created": 1700000000,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "Hi"}, "finish_reason": "length"},
            {
                "index": 1,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "abcDEF123",
                            "type": "function",
                            "function": {"name": "f", "arguments": '{"a":1}'},
                        }
                    ],
                },
                "finish_reason": "tool_calls",
            },
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
    }


def test_mistral_finish_reason_error_is_an_upstream_error() -> None:
    body = {"id": "c", "choices": [{"index": 0, "message": {"content": "x"}, "finish_reason": "error"}]}
    with pytest.raises(UpstreamStatusError):
        _adapter().parse_chat_response(body)


def test_mistral_parse_embeddings() -> None:
    body = {
        "id": "e",
        "object": "list",
        "model": "mistral-embed",
        "data": [{"object": "embedding", "embedding": [0.5], "index": 0}],
        "usage": {"prompt_tokens": 1, "total_tokens": 1, "completion_tokens": 0},
    }
    assert _adapter().parse_response(RouteType.EMBEDDINGS, body) == {
        "object": "list",
        "data": [{"object": "embedding", "index": 0, "embedding": [0.5]}],
        "model": "mistral-embed",
        "usage": {"prompt_tokens": 1, "total_tokens": 1},
    }


def test_mistral_stream_chunks_keep_tool_indices_and_end_with_usage() -> None:
    head = {"id": "s", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    events = [
        {**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]},
        {**head, "choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}]},
        {**head, "choices": [{"index": 0, "delta": {"tool_calls": [
            {"id": "aaaaaaaa1", "function": {"name": "f", "arguments": "{}"}, "index": 0},
            {"id": "aaaaaaaa2", "function": {"name": "g", "arguments": {"x": 1}}, "index": 0},
        ]}, "finish_reason": None}]},
        {**head, "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "tool_calls"}],
         "usage": {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}},
        "[DONE]",
    ]  # fmt: skip

    def chunk(delta: dict, finish: str | None = None, **extra: dict) -> dict:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return {"object": "chat.completion.chunk", "model": "m", "choices": [choice], **extra, "id": "s"}

    assert _events(RouteType.CHAT, events) == [
        chunk({"role": "assistant"}),
        chunk({"content": "Hi"}),
        chunk({"tool_calls": [
            {"index": 0, "id": "aaaaaaaa1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
            {"index": 1, "id": "aaaaaaaa2", "type": "function", "function": {"name": "g", "arguments": '{"x":1}'}},
        ]}),
        chunk({}, "tool_calls", usage={"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}),
    ]  # fmt: skip


def test_mistral_stream_for_completions_and_error_events() -> None:
    head = {"id": "s", "model": "m"}
    events = [
        {**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "ok"}, "finish_reason": None}]},
        {**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "model_length"}], "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}},
    ]  # fmt: skip
    assert _events(RouteType.COMPLETIONS, events) == [
        {"object": "text_completion", "model": "m", "choices": [{"index": 0, "text": "ok", "finish_reason": None}], "id": "s"},
        {"object": "text_completion", "model": "m", "choices": [{"index": 0, "text": "", "finish_reason": "length"}], "id": "s", "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}},
    ]  # fmt: skip
    with pytest.raises(UpstreamStatusError, match="capacity"):
        _events(
            RouteType.CHAT, [{"object": "error", "message": "Service tier capacity exceeded", "type": "x"}]
        )


def test_mistral_error_reason_reads_both_error_shapes() -> None:
    adapter = _adapter()
    nested = {
        "object": "error",
        "message": {
            "detail": [
                {"type": "extra_forbidden", "loc": ["body", "seed"], "msg": "Extra inputs are not permitted"}
            ]
        },
        "type": "invalid_request_message_error",
    }
    assert adapter.error_reason(422, nested) == "seed: Extra inputs are not permitted"
    assert (
        adapter.error_reason(422, {"detail": [{"loc": ["body", "messages", 0], "msg": "bad"}]})
        == "messages.0: bad"
    )
    assert adapter.error_reason(401, {"message": "Unauthorized", "request_id": "r"}) == "Unauthorized"


def test_mistral_config_validates_the_base() -> None:
    assert (
        _adapter(mistral_api_base="http://127.0.0.1:2/v1").embeddings_url
        == "http://127.0.0.1:2/v1/embeddings"
    )
    with pytest.raises(ValidationError, match="query string"):
        _adapter(mistral_api_base="https://api.mistral.ai/v1?x=1")


def test_mistral_sample_config_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MISTRAL_API_KEY", "mi-sample")
    config = load_config(SAMPLE)
    assert {route.route_type for route in config.routes} == set(RouteType)
    for route in config.routes:
        assert get_adapter_class(route.model.provider) is MistralAdapter
        assert route.model.config.mistral_api_key.get() == "mi-sample"


@pytest.mark.parametrize(
    ("call_id", "sent"),
    [
        ("call_abc123XYZ789def456ghi012", "AHmkim53Z"),
        ("toolu_01A09q90qw90lq917835lq9", "TbZIuM3Pe"),
        ("call_2", "UtBgay5ZT"),
        ("abcDEF123", "abcDEF123"),  # already valid: unchanged
        ("abcDEF12", "nFnCTwy3n"),  # 8 characters: too short
    ],
)
def test_mistral_call_id_is_nine_letters_and_digits_and_deterministic(call_id: str, sent: str) -> None:
    assert mistral_call_id(call_id) == sent == mistral_call_id(call_id)
    assert len(sent) == 9 and sent.isascii() and sent.isalnum()


def test_mistral_build_chat_request_maps_a_call_and_its_result_to_one_id() -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    messages = [
        {"role": "user", "content": "x"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "y"},
    ]
    sent = _adapter().build_chat_request({"messages": messages, "tools": [TOOL]}).body["messages"]
    assert sent[1]["tool_calls"] == [{**call, "id": mistral_call_id("call_1")}]
    assert sent[2] == {"role": "tool", "tool_call_id": mistral_call_id("call_1"), "content": "y"}
    assert call["id"] == "call_1"  # the caller's dicts are not modified
