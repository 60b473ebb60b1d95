"""The FakeOpenAI upstream: wire shapes, recording, every fault kind, streaming, Azure paths."""

from __future__ import annotations

import base64
import struct
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from gateway_server.testing import FakeOpenAI, Fault, count_tokens, fake_embedding
from gateway_server.testing.fake_openai import SYSTEM_FINGERPRINT

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello big world"}]}
USAGE_DETAILS = {
    "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
    "completion_tokens_details": {
        "reasoning_tokens": 0,
        "audio_tokens": 0,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    },
}


@pytest.fixture
def client(fake_openai: FakeOpenAI) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fake_openai.api_base, timeout=5) as client:
        yield client


def sse_data(response: httpx.Response) -> Iterator[str]:
    """The ``data:`` payloads of an SSE response, as they arrive."""
    for line in response.iter_lines():
        if line.startswith("data: "):
            yield line.removeprefix("data: ")


def read_events(client: httpx.Client, path: str, payload: dict[str, Any]) -> tuple[list[Any], bool]:
    """Stream ``path`` until it ends or breaks; return (JSON events, whether it ended with [DONE])."""
    events: list[Any] = []
    done = False
    try:
        with client.stream("POST", path, json=payload) as response:
            assert response.headers["content-type"] == "text/event-stream"
            for data in sse_data(response):
                if data == "[DONE]":
                    done = True
                else:
                    events.append(orjson.loads(data))
    except httpx.RemoteProtocolError:
        pass
    return events, done


# -- shapes ---------------------------------------------------------------------------------------


def test_fake_openai_chat_answers_documented_shape_echoing_last_user_message(client: httpx.Client) -> None:
    response = client.post("/chat/completions", json=CHAT)

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "id": "chatcmpl-fake000001",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "gpt-4o-mini",
        "system_fingerprint": SYSTEM_FINGERPRINT,
        "service_tier": "default",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "hello big world",
                    "refusal": None,
                    "annotations": [],
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6, **USAGE_DETAILS},
    }


def test_fake_openai_chat_counts_all_messages_and_echoes_text_parts(client: httpx.Client) -> None:
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "two "}, {"type": "text", "text": "parts"}]},
    ]
    body = client.post("/chat/completions", json={"model": "m", "messages": messages, "n": 2}).json()

    assert [choice["message"]["content"] for choice in body["choices"]] == ["two parts", "two parts"]
    assert [choice["index"] for choice in body["choices"]] == [0, 1]
    assert body["usage"]["prompt_tokens"] == 4
    assert body["usage"]["completion_tokens"] == 4  # two choices of two words


def test_fake_openai_chat_applies_stop_then_max_tokens(client: httpx.Client) -> None:
    limited = client.post("/chat/completions", json={**CHAT, "max_tokens": 2}).json()
    stopped = client.post("/chat/completions", json={**CHAT, "stop": [" world"]}).json()
    newer = client.post("/chat/completions", json={**CHAT, "max_completion_tokens": 1}).json()

    assert limited["choices"][0]["message"]["content"] == "hello big"
    assert limited["choices"][0]["finish_reason"] == "length"
    assert limited["usage"]["completion_tokens"] == 2
    assert stopped["choices"][0]["message"]["content"] == "hello big"
    assert stopped["choices"][0]["finish_reason"] == "stop"
    assert newer["choices"][0]["message"]["content"] == "hello"


def test_fake_openai_chat_calls_a_tool_when_offered_one(client: httpx.Client) -> None:
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    body = client.post("/chat/completions", json={**CHAT, "tools": tools}).json()

    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    assert choice["message"]["tool_calls"] == [
        {
            "id": "call_fake000002",
            "type": "function",
            "function": {"name": "lookup", "arguments": '{"text":"hello big world"}'},
        }
    ]

    follow_up = CHAT["messages"] + [
        choice["message"],
        {"role": "tool", "tool_call_id": "call_fake000002", "content": "42"},
    ]
    answer = client.post("/chat/completions", json={"model": "m", "messages": follow_up, "tools": tools})
    assert answer.json()["choices"][0]["message"]["content"] == "42"

    unused = client.post("/chat/completions", json={**CHAT, "tools": tools, "tool_choice": "none"}).json()
    assert unused["choices"][0]["message"]["content"] == "hello big world"


def test_fake_openai_completions_answers_one_choice_per_prompt(client: httpx.Client) -> None:
    single = client.post("/completions", json={"model": "gpt-3.5-turbo-instruct", "prompt": "say this"})
    several = client.post("/completions", json={"model": "m", "prompt": ["a b", "c"], "max_tokens": 1})

    assert single.json() == {
        "id": "cmpl-fake000001",
        "object": "text_completion",
        "created": 1_700_000_000,
        "model": "gpt-3.5-turbo-instruct",
        "system_fingerprint": SYSTEM_FINGERPRINT,
        "choices": [{"text": "say this", "index": 0, "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 2, "completion_tokens": 2, "total_tokens": 4},
    }
    assert [(c["index"], c["text"], c["finish_reason"]) for c in several.json()["choices"]] == [
        (0, "a", "length"),
        (1, "c", "stop"),
    ]


def test_fake_openai_embeddings_are_deterministic_vectors(client: httpx.Client) -> None:
    response = client.post("/embeddings", json={"model": "text-embedding-3-small", "input": ["a b", "c"]})

    assert response.json() == {
        "object": "list",
        "data": [
            {"object": "embedding", "index": 0, "embedding": fake_embedding("a b")},
            {"object": "embedding", "index": 1, "embedding": fake_embedding("c")},
        ],
        "model": "text-embedding-3-small",
        "usage": {"prompt_tokens": 3, "total_tokens": 3},
    }
    assert len(fake_embedding("a b")) == 8
    assert all(-1 <= value <= 1 for value in fake_embedding("a b"))
    assert fake_embedding("a b") != fake_embedding("c")


def test_fake_openai_embeddings_honour_dimensions_and_base64(client: httpx.Client) -> None:
    payload = {"model": "m", "input": "hi", "dimensions": 4, "encoding_format": "base64"}
    encoded = client.post("/embeddings", json=payload).json()["data"][0]["embedding"]

    decoded = struct.unpack("<4f", base64.b64decode(encoded))
    assert decoded == pytest.approx(fake_embedding("hi", 4), abs=1e-6)


def test_fake_openai_count_tokens_counts_words() -> None:
    assert count_tokens("") == 0
    assert count_tokens("  one two\nthree ") == 3


# -- strictness -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "payload", "message", "param"),
    [
        ("/chat/completions", {"messages": CHAT["messages"]}, "you must provide a model parameter", None),
        ("/chat/completions", {"model": "m"}, "Missing required parameter: 'messages'.", "messages"),
        (
            "/chat/completions",
            {"model": "m", "messages": []},
            "Missing required parameter: 'messages'.",
            "messages",
        ),
        ("/completions", {"model": "m"}, "Missing required parameter: 'prompt'.", "prompt"),
        ("/embeddings", {"model": "m"}, "Missing required parameter: 'input'.", "input"),
    ],
)
def test_fake_openai_refuses_incomplete_requests_with_openai_envelope(
    client: httpx.Client, path: str, payload: dict[str, Any], message: str, param: str | None
) -> None:
    response = client.post(path, json=payload)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["message"] == message
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param


def test_fake_openai_refuses_a_body_that_is_not_json(client: httpx.Client) -> None:
    response = client.post(
        "/chat/completions", content=b"{not json", headers={"content-type": "application/json"}
    )

    assert response.status_code == 400
    assert "could not parse the JSON body" in response.json()["error"]["message"]


def test_fake_openai_answers_404_and_405_in_its_envelope(
    client: httpx.Client, fake_openai: FakeOpenAI
) -> None:
    unknown = client.post("/nope", json={})
    wrong_method = client.get("/chat/completions")

    assert unknown.status_code == 404
    assert unknown.json()["error"]["type"] == "invalid_request_error"
    assert wrong_method.status_code == 405
    assert [(r.method, r.path) for r in fake_openai.requests] == [
        ("POST", "/v1/nope"),
        ("GET", "/v1/chat/completions"),
    ]


def test_fake_openai_checks_the_bearer_key_when_given_one(
    client: httpx.Client, fake_openai: FakeOpenAI
) -> None:
    fake_openai.api_key = "sk-right"

    missing = client.post("/chat/completions", json=CHAT)
    wrong = client.post("/chat/completions", json=CHAT, headers={"Authorization": "Bearer sk-wrong"})
    right = client.post("/chat/completions", json=CHAT, headers={"Authorization": "Bearer sk-right"})

    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "invalid_api_key"
    assert wrong.status_code == 401
    assert right.status_code == 200


# -- recording ------------------------------------------------------------------------------------


def test_fake_openai_records_method_path_query_headers_and_body(
    client: httpx.Client, fake_openai: FakeOpenAI
) -> None:
    client.post(
        "/chat/completions?trace=1&trace=2",
        json=CHAT,
        headers={"Authorization": "Bearer sk-test", "OpenAI-Organization": "org-1"},
    )

    [request] = fake_openai.requests
    assert request.method == "POST"
    assert request.path == "/v1/chat/completions"
    assert request.query_string == "trace=1&trace=2"
    assert request.query.getlist("trace") == ["1", "2"]
    assert request.headers["authorization"] == "Bearer sk-test"
    assert request.headers["AUTHORIZATION"] == "Bearer sk-test"
    assert request.headers["openai-organization"] == "org-1"
    assert request.json == CHAT
    assert orjson.loads(request.body) == CHAT
    assert request.path_params == {}
    assert fake_openai.last_request is request


def test_fake_openai_records_non_json_bodies_as_none(client: httpx.Client, fake_openai: FakeOpenAI) -> None:
    client.post("/chat/completions", content=b"plain text")

    assert fake_openai.last_request.body == b"plain text"
    assert fake_openai.last_request.json is None


def test_fake_openai_reset_forgets_requests_faults_settings_and_ids(
    client: httpx.Client, fake_openai: FakeOpenAI
) -> None:
    client.post("/chat/completions", json=CHAT)
    fake_openai.inject(Fault.error(500), times=None)
    fake_openai.api_key = "sk-x"
    fake_openai.chunk_delay = 1.0

    fake_openai.reset()

    assert fake_openai.requests == []
    with pytest.raises(LookupError):
        _ = fake_openai.last_request
    assert fake_openai.api_key is None
    assert fake_openai.chunk_delay == 0.0
    response = client.post("/chat/completions", json=CHAT)
    assert response.status_code == 200
    assert response.json()["id"] == "chatcmpl-fake000001"


def test_fake_openai_wait_for_requests_has_a_deadline(fake_openai: FakeOpenAI) -> None:
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="received 0 of 1 requests"):
        fake_openai.wait_for_requests(1, timeout=0.2)
    assert time.monotonic() - started < 2


# -- Azure ----------------------------------------------------------------------------------------


def test_fake_openai_serves_azure_deployment_paths(fake_openai: FakeOpenAI) -> None:
    with httpx.Client(base_url=fake_openai.url, timeout=5) as client:
        chat = client.post(
            "/openai/deployments/my-gpt/chat/completions?api-version=2024-06-01",
            json={"messages": CHAT["messages"]},
            headers={"api-key": "azure-key"},
        )
        embeddings = client.post(
            "/openai/deployments/my-embed/embeddings",
            params={"api-version": "2024-06-01"},
            json={"input": "x"},
        )
        completions = client.post(
            "/openai/deployments/my-instruct/completions?api-version=2024-06-01", json={"prompt": "p"}
        )

    assert chat.status_code == 200
    assert chat.json()["model"] == "my-gpt"
    assert chat.json()["choices"][0]["message"]["content"] == "hello big world"
    assert embeddings.json()["data"][0]["embedding"] == fake_embedding("x")
    assert completions.json()["choices"][0]["text"] == "p"
    first = fake_openai.requests[0]
    assert first.path == "/openai/deployments/my-gpt/chat/completions"
    assert first.path_params == {"deployment": "my-gpt"}
    assert first.query["api-version"] == "2024-06-01"
    assert first.headers["Api-Key"] == "azure-key"


def test_fake_openai_azure_requires_api_version_and_key(fake_openai: FakeOpenAI) -> None:
    fake_openai.api_key = "azure-key"
    path = "/openai/deployments/d/chat/completions"
    payload = {"messages": CHAT["messages"]}
    with httpx.Client(base_url=fake_openai.url, timeout=5) as client:
        no_version = client.post(path, json=payload, headers={"api-key": "azure-key"})
        no_key = client.post(path, params={"api-version": "v"}, json=payload)
        key = client.post(path, params={"api-version": "v"}, json=payload, headers={"api-key": "azure-key"})
        bearer = client.post(
            path, params={"api-version": "v"}, json=payload, headers={"Authorization": "Bearer azure-key"}
        )

    assert no_version.status_code == 404
    assert no_version.json() == {"error": {"code": "404", "message": "Resource not found"}}
    assert no_key.status_code == 401
    assert no_key.json()["error"]["code"] == "401"
    assert (key.status_code, bearer.status_code) == (200, 200)


def test_fake_openai_prefix_is_configurable() -> None:
    with FakeOpenAI(prefix="").serve() as fake:
        assert fake.api_base == fake.url
        with httpx.Client(base_url=fake.api_base, timeout=5) as client:
            assert client.post("/chat/completions", json=CHAT).status_code == 200
            assert client.post("/v1/chat/completions", json=CHAT).status_code == 404


# -- streaming ------------------------------------------------------------------------------------


def test_fake_openai_streams_chat_chunks_then_done(client: httpx.Client) -> None:
    events, done = read_events(client, "/chat/completions", {**CHAT, "stream": True})

    assert done
    assert {event["object"] for event in events} == {"chat.completion.chunk"}
    assert {event["id"] for event in events} == {"chatcmpl-fake000001"}
    assert all("usage" not in event for event in events)
    deltas = [event["choices"][0]["delta"] for event in events]
    assert deltas[0] == {"role": "assistant", "content": "", "refusal": None}
    assert [delta["content"] for delta in deltas[1:-1]] == ["hello ", "big ", "world"]
    assert deltas[-1] == {}
    assert [event["choices"][0]["finish_reason"] for event in events] == [None] * 4 + ["stop"]


def test_fake_openai_streams_usage_last_when_asked(client: httpx.Client) -> None:
    payload = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    events, done = read_events(client, "/chat/completions", payload)

    assert done
    *content, last = events
    assert all(event["usage"] is None for event in content)
    assert last["choices"] == []
    assert last["usage"] == {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6, **USAGE_DETAILS}


def test_fake_openai_streams_tool_calls(client: httpx.Client) -> None:
    tools = [{"type": "function", "function": {"name": "lookup"}}]
    events, done = read_events(client, "/chat/completions", {**CHAT, "tools": tools, "stream": True})

    assert done
    calls = [event["choices"][0]["delta"]["tool_calls"][0] for event in events[1:3]]
    assert calls[0]["function"] == {"name": "lookup", "arguments": ""}
    assert calls[0]["id"].startswith("call_")
    assert calls[1] == {"index": 0, "function": {"arguments": '{"text":"hello big world"}'}}
    assert events[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_fake_openai_streams_completions(client: httpx.Client) -> None:
    payload = {"model": "m", "prompt": "one two", "stream": True, "stream_options": {"include_usage": True}}
    events, done = read_events(client, "/completions", payload)

    assert done
    assert {event["object"] for event in events} == {"text_completion"}
    assert [event["choices"][0]["text"] for event in events[:-1]] == ["one ", "two", ""]
    assert events[-2]["choices"][0]["finish_reason"] == "stop"
    assert events[-1]["usage"] == {"prompt_tokens": 2, "completion_tokens": 2, "total_tokens": 4}


def test_fake_openai_streams_on_azure_paths(fake_openai: FakeOpenAI) -> None:
    with httpx.Client(base_url=fake_openai.url, timeout=5) as client:
        path = "/openai/deployments/d/chat/completions?api-version=v"
        events, done = read_events(client, path, {"messages": CHAT["messages"], "stream": True})

    assert done
    assert "".join(event["choices"][0]["delta"].get("content", "") for event in events) == "hello big world"


# -- faults ---------------------------------------------------------------------------------------


def test_fault_error_answers_status_headers_and_default_envelope_once(
    client: httpx.Client, fake_openai: FakeOpenAI
) -> None:
    fake_openai.inject(Fault.rate_limited(retry_after=2))

    limited = client.post("/chat/completions", json=CHAT)
    after = client.post("/chat/completions", json=CHAT)

    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "2"
    assert limited.json()["error"]["type"] == "requests"
    assert limited.json()["error"]["code"] == "rate_limit_exceeded"
    assert after.status_code == 200
    assert len(fake_openai.requests) == 2  # faulted requests are recorded too


def test_fault_error_sends_given_json_or_text_body(client: httpx.Client, fake_openai: FakeOpenAI) -> None:
    fake_openai.inject(Fault.error(400, {"error": {"message": "custom"}}))
    fake_openai.inject(Fault.error(503, "upstream sad", headers={"X-Request-Id": "r1"}))

    custom = client.post("/chat/completions", json=CHAT)
    text = client.post("/chat/completions", json=CHAT)

    assert (custom.status_code, custom.json()) == (400, {"error": {"message": "custom"}})
    assert text.status_code == 503
    assert text.text == "upstream sad"
    assert text.headers["content-type"].startswith("text/plain")
    assert text.headers["x-request-id"] == "r1"


def test_fault_fails_first_k_calls_then_succeeds(client: httpx.Client, fake_openai: FakeOpenAI) -> None:
    fake_openai.inject(Fault.error(500), times=3)

    statuses = [client.post("/chat/completions", json=CHAT).status_code for _ in range(5)]

    assert statuses == [500, 500, 500, 200, 200]


def test_fault_persists_until_cleared(client: httpx.Client, fake_openai: FakeOpenAI) -> None:
    fake_openai.inject(Fault.error(502), times=None)

    statuses = [client.post("/embeddings", json={"model": "m", "input": "x"}).status_code for _ in range(4)]
    fake_openai.clear_faults()

    assert statuses == [502] * 4
    assert client.post("/embeddings", json={"model": "m", "input": "x"}).status_code == 200


def test_fault_can_target_one_path_suffix(client: httpx.Client, fake_openai: FakeOpenAI) -> None:
    fake_openai.inject(Fault.error(500), path="/embeddings")

    chat = client.post("/chat/completions", json=CHAT)
    embeddings = client.post("/embeddings", json={"model": "m", "input": "x"})

    assert (chat.status_code, embeddings.status_code) == (200, 500)


def test_faults_are_consumed_in_injection_order(client: httpx.Client, fake_openai: FakeOpenAI) -> None:
    fake_openai.inject(Fault.error(500))
    fake_openai.inject(Fault.error(503))

    statuses = [client.post("/chat/completions", json=CHAT).status_code for _ in range(3)]

    assert statuses == [500, 503, 200]


def test_fault_inject_rejects_zero_times(fake_openai: FakeOpenAI) -> None:
    with pytest.raises(ValueError, match="times"):
        fake_openai.inject(Fault.error(500), times=0)


def test_fault_slow_delays_the_answer(client: httpx.Client, fake_openai: FakeOpenAI) -> None:
    fake_openai.inject(Fault.slow(0.3))

    started = time.monotonic()
    response = client.post("/chat/completions", json=CHAT)

    assert response.status_code == 200
    assert time.monotonic() - started >= 0.3


def test_fault_slow_lets_a_client_time_out_and_the_fake_carries_on(
    client: httpx.Client, fake_openai: FakeOpenAI
) -> None:
    fake_openai.inject(Fault.slow(30))

    with pytest.raises(httpx.ReadTimeout):
        client.post("/chat/completions", json=CHAT, timeout=0.2)

    started = time.monotonic()
    assert client.post("/chat/completions", json=CHAT).status_code == 200
    assert time.monotonic() - started < 2


def test_fault_slow_combines_with_a_status(client: httpx.Client, fake_openai: FakeOpenAI) -> None:
    fake_openai.inject(Fault(status=504, delay=0.2))

    started = time.monotonic()
    response = client.post("/chat/completions", json=CHAT)

    assert response.status_code == 504
    assert time.monotonic() - started >= 0.2


def test_fault_not_json_answers_200_html(client: httpx.Client, fake_openai: FakeOpenAI) -> None:
    fake_openai.inject(Fault.not_json())

    response = client.post("/chat/completions", json=CHAT)

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.text.startswith("<html>")
    with pytest.raises(ValueError):
        response.json()


def test_fault_disconnect_closes_without_answering(client: httpx.Client, fake_openai: FakeOpenAI) -> None:
    fake_openai.inject(Fault.disconnect())

    with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
        client.post("/chat/completions", json=CHAT)

    assert len(fake_openai.requests) == 1
    assert client.post("/chat/completions", json=CHAT).status_code == 200


def test_fault_drop_mid_body_sends_headers_and_half_a_body(
    client: httpx.Client, fake_openai: FakeOpenAI
) -> None:
    fake_openai.inject(Fault.drop_mid_body())

    with client.stream("POST", "/chat/completions", json=CHAT) as response:
        assert response.status_code == 200
        with pytest.raises(httpx.RemoteProtocolError, match="complete message body"):
            response.read()

    assert client.post("/chat/completions", json=CHAT).status_code == 200


def test_fault_cut_stream_stops_after_n_chunks_without_done(
    client: httpx.Client, fake_openai: FakeOpenAI
) -> None:
    fake_openai.inject(Fault.cut_stream(after=2))

    events, done = read_events(client, "/chat/completions", {**CHAT, "stream": True})

    assert not done
    assert len(events) == 2
    assert events[1]["choices"][0]["delta"] == {"content": "hello "}


def test_fault_cut_stream_raises_in_the_client(client: httpx.Client, fake_openai: FakeOpenAI) -> None:
    fake_openai.inject(Fault.cut_stream(after=1))

    with (
        pytest.raises(httpx.RemoteProtocolError),
        client.stream("POST", "/chat/completions", json={**CHAT, "stream": True}) as response,
    ):
        response.read()


def test_fault_slow_stream_spaces_the_chunks(client: httpx.Client, fake_openai: FakeOpenAI) -> None:
    fake_openai.inject(Fault.slow_stream(0.1))
    arrivals: list[float] = []

    with client.stream("POST", "/chat/completions", json={**CHAT, "stream": True}) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                arrivals.append(time.monotonic())

    assert len(arrivals) == 6  # role, three words, finish, [DONE]
    assert arrivals[-1] - arrivals[0] >= 0.4


def test_fake_chunk_delay_setting_applies_to_every_stream(
    client: httpx.Client, fake_openai: FakeOpenAI
) -> None:
    fake_openai.chunk_delay = 0.05

    started = time.monotonic()
    events, done = read_events(client, "/completions", {"model": "m", "prompt": "a b c", "stream": True})

    assert done
    assert len(events) == 4
    assert time.monotonic() - started >= 0.25  # 5 chunks, [DONE] included


@pytest.mark.parametrize("http", ["h11", "httptools"])
def test_drop_faults_work_under_both_uvicorn_protocols(http: str) -> None:
    with FakeOpenAI().serve(http=http) as fake, httpx.Client(base_url=fake.api_base, timeout=5) as client:
        fake.inject(Fault.disconnect())
        fake.inject(Fault.drop_mid_body())
        fake.inject(Fault.cut_stream(after=3))

        with pytest.raises(httpx.RemoteProtocolError):
            client.post("/chat/completions", json=CHAT)
        with pytest.raises(httpx.RemoteProtocolError):
            client.post("/chat/completions", json=CHAT)
        events, done = read_events(client, "/chat/completions", {**CHAT, "stream": True})
        assert (len(events), done) == (3, False)
        assert client.post("/chat/completions", json=CHAT).status_code == 200
