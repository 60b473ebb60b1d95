"""The TGI adapter + the network module against the fake TGI server on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from upstream_calls import call, stream

from gateway_server.errors import UpstreamProtocolError, UpstreamStatusError, UpstreamTimeoutError
from gateway_server.providers.huggingface_text_generation_inference import TGIAdapter, TGIConfig
from gateway_server.routes import RouteType
from gateway_server.testing import Fault
from gateway_server.testing.fake_tgi import FakeTGI

pytestmark = pytest.mark.contract

CHAT = {"messages": [{"role": "user", "content": "hello tgi"}]}


@pytest.fixture(scope="module")
def fake_tgi_server() -> Iterator[FakeTGI]:
    with FakeTGI().serve() as fake:
        yield fake


@pytest.fixture
def fake_tgi(fake_tgi_server: FakeTGI) -> Iterator[FakeTGI]:
    fake_tgi_server.reset()
    yield fake_tgi_server
    fake_tgi_server.reset()


def _adapter(fake: FakeTGI) -> TGIAdapter:
    return TGIAdapter(TGIConfig.model_validate({"hf_server_url": fake.url}), "llama-3-8b")


def test_tgi_generate_request_and_answer(fake_tgi: FakeTGI) -> None:
    result = call(
        _adapter(fake_tgi),
        RouteType.COMPLETIONS,
        {"prompt": "one two three", "max_tokens": 2, "temperature": 0},
    )
    request = fake_tgi.last_request
    assert (request.method, request.path) == ("POST", "/generate")
    assert request.headers["content-type"] == "application/json" and "authorization" not in request.headers
    assert request.json == {
        "inputs": "one two three",
        "parameters": {
            "details": True,
            "decoder_input_details": True,
            "max_new_tokens": 2,
            "do_sample": False,
        },
    }
    assert result["choices"] == [{"index": 0, "text": "one two", "finish_reason": "length"}]
    assert result["usage"] == {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}


def test_tgi_chat_through_the_messages_api(fake_tgi: FakeTGI) -> None:
    result = call(_adapter(fake_tgi), RouteType.CHAT, dict(CHAT))
    assert fake_tgi.last_request.path == "/v1/chat/completions"
    assert fake_tgi.last_request.json == {**CHAT, "model": "llama-3-8b"}
    assert result["choices"][0]["message"] == {"role": "assistant", "content": "hello tgi"}


def test_tgi_generate_stream(fake_tgi: FakeTGI) -> None:
    chunks = stream(_adapter(fake_tgi), RouteType.COMPLETIONS, {"prompt": "a b c", "stream": True})
    assert fake_tgi.last_request.path == "/generate_stream"
    assert fake_tgi.last_request.json == {"inputs": "a b c", "parameters": {"details": True}}
    assert "".join(chunk["choices"][0]["text"] for chunk in chunks) == "a b c"  # the special </s> is dropped
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["usage"] == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}


def test_tgi_chat_stream(fake_tgi: FakeTGI) -> None:
    chunks = stream(_adapter(fake_tgi), RouteType.CHAT, {**CHAT, "stream": True})
    assert fake_tgi.last_request.json["stream_options"] == {"include_usage": True}
    text = "".join(choice["delta"].get("content") or "" for chunk in chunks for choice in chunk["choices"])
    assert text == "hello tgi" and chunks[-1]["usage"]["total_tokens"] == 4


def test_tgi_validation_error_passes_through_with_tgis_words(fake_tgi: FakeTGI) -> None:
    with pytest.raises(UpstreamStatusError) as caught:
        call(_adapter(fake_tgi), RouteType.COMPLETIONS, {"prompt": "x", "stop": ["a", "b", "c", "d", "e"]})
    assert (caught.value.upstream_status, caught.value.status_code) == (422, 422)
    assert "`stop` supports up to 4 stop sequences" in caught.value.message


@pytest.mark.parametrize(
    ("status", "gateway_status"),
    [(400, 400), (401, 502), (403, 502), (404, 404), (424, 502), (500, 502), (503, 502)],
)
def test_tgi_status_maps(fake_tgi: FakeTGI, status: int, gateway_status: int) -> None:
    fake_tgi.inject(Fault.error(status))
    with pytest.raises(UpstreamStatusError) as caught:
        call(_adapter(fake_tgi), RouteType.COMPLETIONS, {"prompt": "x"})
    assert caught.value.status_code == gateway_status
    assert f"Injected fault: status {status}" in caught.value.message


def test_tgi_overloaded_keeps_retry_after(fake_tgi: FakeTGI) -> None:
    fake_tgi.inject(Fault.rate_limited(retry_after=4))
    with pytest.raises(UpstreamStatusError) as caught:
        call(_adapter(fake_tgi), RouteType.COMPLETIONS, {"prompt": "x"})
    assert (caught.value.status_code, caught.value.retry_after) == (429, 4)


def test_tgi_timeout_and_non_json(fake_tgi: FakeTGI) -> None:
    fake_tgi.inject(Fault.slow(2))
    with pytest.raises(UpstreamTimeoutError):
        call(_adapter(fake_tgi), RouteType.COMPLETIONS, {"prompt": "x"}, timeout=0.3)
    fake_tgi.inject(Fault.not_json())
    with pytest.raises(UpstreamProtocolError):
        call(_adapter(fake_tgi), RouteType.COMPLETIONS, {"prompt": "x"})
