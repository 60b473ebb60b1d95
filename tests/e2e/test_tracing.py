"""OpenTelemetry through a real ``gatewayctl serve --workers 2``: the caller's ``traceparent`` is the
parent of the server span, each upstream attempt is a client span sent upstream as ``traceparent``,
and the spans reach an OTLP/HTTP receiver with the GenAI attributes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway_server.testing import FakeOpenAI, Fault
from gateway_server.testing.otlp_receiver import OtlpReceiver, ReceivedSpan
from gateway_server.testing.process import GatewayProcess

pytestmark = pytest.mark.e2e

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
CHAT = {"messages": [{"role": "user", "content": "one two three"}]}


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(api_key="sk-trace-test").serve() as fake:
        yield fake


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver().serve() as running:
        yield running


@pytest.fixture
def gateway(tmp_path: Path, fake_openai: FakeOpenAI, receiver: OtlpReceiver) -> Iterator[GatewayProcess]:
    config = tmp_path / "gateway.yaml"
    config.write_text(
        "routes:\n"
        "  - name: chat\n"
        "    route_type: llm/v1/chat\n"
        f"    model: {{provider: openai, name: gpt-4o-mini, config: {{openai_api_key: sk-trace-test, "
        f"openai_api_base: '{fake_openai.api_base}'}}}}\n"
        "    retry: {attempts: 2, backoff: 0}\n",
        encoding="utf-8",
    )
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_BSP_SCHEDULE_DELAY": "50"}
    with GatewayProcess(config, log_dir=tmp_path, env=env, args=["--workers", "2"]) as process:
        yield process


def test_a_trace_reaches_the_receiver_with_genai_attributes(
    gateway: GatewayProcess, fake_openai: FakeOpenAI, receiver: OtlpReceiver
) -> None:
    fake_openai.inject(Fault.error(503), times=1)  # the first attempt fails: two client spans
    response = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        json={"model": "chat", **CHAT},
        headers={"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    upstream = [request.headers["traceparent"] for request in fake_openai.requests]
    assert len(upstream) == 2
    for header in upstream:
        assert header.startswith(f"00-{CALLER_TRACE}-") and header.endswith("-01")

    server = receiver.wait_for_span(lambda span: span.kind == "server" and span.trace_id == CALLER_TRACE)
    assert server.parent_span_id == CALLER_SPAN
    assert server.attributes["http.response.status_code"] == 200
    assert server.attributes["gateway.route"] == "chat"
    assert server.attributes["gateway.request_id"] == response.headers["x-request-id"]
    assert server.resource["service.name"] == "gatewayctl"

    answered = receiver.wait_for_span(
        lambda span: span.kind == "client" and "gen_ai.usage.input_tokens" in span.attributes
    )
    failed = receiver.wait_for_span(lambda span: span.kind == "client" and span.status_code == 2)
    usage = response.json()["usage"]
    assert answered.name == "chat gpt-4o-mini"
    assert answered.parent_span_id == server.span_id == failed.parent_span_id
    assert answered.attributes["gen_ai.system"] == "openai"
    assert answered.attributes["gen_ai.operation.name"] == "chat"
    assert answered.attributes["gen_ai.request.model"] == "gpt-4o-mini"
    assert answered.attributes["gen_ai.response.model"] == response.json()["model"]
    assert answered.attributes["gen_ai.usage.input_tokens"] == usage["prompt_tokens"]
    assert answered.attributes["gen_ai.usage.output_tokens"] == usage["completion_tokens"]
    assert answered.attributes["gen_ai.response.finish_reasons"] == ["stop"]
    assert failed.attributes["error.type"] == "5xx"
    # Each attempt's own span went upstream as the parent of whatever the upstream records.
    assert sorted(header.split("-")[2] for header in upstream) == sorted([answered.span_id, failed.span_id])


def test_a_stream_is_traced_to_its_last_chunk(gateway: GatewayProcess, receiver: OtlpReceiver) -> None:
    with httpx.stream(
        "POST",
        f"{gateway.url}/v1/chat/completions",
        json={"model": "chat", "stream": True, **CHAT},
        timeout=10,
    ) as response:
        assert response.status_code == 200
        request_id = response.headers["x-request-id"]
        text = "".join(response.iter_text())
    assert text.rstrip().endswith("[DONE]")
    server = receiver.wait_for_span(lambda span: span.attributes.get("gateway.request_id") == request_id)
    client = receiver.wait_for_span(lambda span: span.parent_span_id == server.span_id)
    assert client.attributes["gen_ai.usage.output_tokens"] > 0
    assert client.attributes["gen_ai.response.finish_reasons"] == ["stop"]


def _answered_span(receiver: OtlpReceiver, request_id: str) -> ReceivedSpan:
    """The client span that carried the answer of the request with this id."""
    server = receiver.wait_for_span(lambda span: span.attributes.get("gateway.request_id") == request_id)
    return receiver.wait_for_span(
        lambda span: span.parent_span_id == server.span_id and "gen_ai.usage.input_tokens" in span.attributes
    )


def test_the_agent_paths_report_what_the_answer_says(gateway: GatewayProcess, receiver: OtlpReceiver) -> None:
    """/v1/messages and /v1/responses (translated to the OpenAI fake): the client span carries the
    served model and the answer's finish reason in each protocol's own words."""
    calls = (
        ("/v1/messages", {"model": "chat", "max_tokens": 64, **CHAT}, "stop_reason"),
        ("/v1/responses", {"model": "chat", "input": "one two three", "store": False}, "status"),
    )
    for path, body, field in calls:
        response = httpx.post(f"{gateway.url}{path}", json=body, timeout=10)
        assert response.status_code == 200, response.text
        client = _answered_span(receiver, response.headers["x-request-id"])
        assert client.attributes["gen_ai.response.model"] == "gpt-4o-mini"
        assert client.attributes["gen_ai.response.finish_reasons"] == [response.json()[field]], path
