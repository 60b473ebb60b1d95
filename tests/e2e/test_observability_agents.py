"""The agent paths (``/v1/messages``, ``/v1/responses``) and every other path through a real
``gatewayctl serve --workers 2``: the token counters equal the usage the clients were told, streamed
or not, natively passed through or translated; streams count a time to first token; the access
lines carry the tokens; and every response, whatever the path, carries an ``X-Request-Id``, which
the agent protocols' error bodies repeat where their shapes allow.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from gateway_server.testing import FakeOpenAI, wait_until
from gateway_server.testing.fake_anthropic import FakeAnthropic
from gateway_server.testing.process import GatewayProcess

pytestmark = pytest.mark.e2e

GATEWAY_KEY = "gw-agent-secret-4e1b"
ADMIN_KEY = "gw-admin-secret-0c77"
PROMPT = "one two three four five six seven"
GENERATED = re.compile(r"[0-9a-f]{32}")


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    tmp_path = tmp_path_factory.mktemp("agents")
    with FakeOpenAI().serve() as openai, FakeAnthropic().serve() as anthropic:
        config = tmp_path / "gateway.yaml"
        config.write_text(
            "auth:\n"
            "  keys:\n"
            "    - {name: team-a, key: $E2E_GATEWAY_KEY, scopes: [query]}\n"
            "    - {name: ops, key: $E2E_ADMIN_KEY, scopes: [query, admin]}\n"
            "routes:\n"
            "  - name: claude\n"
            "    route_type: llm/v1/chat\n"
            "    model: {provider: anthropic, name: claude-x, config: {anthropic_api_key: k, "
            f"anthropic_api_base: '{anthropic.api_base}'}}}}\n"
            "  - name: gpt\n"
            "    route_type: llm/v1/chat\n"
            "    model: {provider: openai, name: gpt-4.1, config: {openai_api_key: k, "
            f"openai_api_base: '{openai.api_base}'}}}}\n",
            encoding="utf-8",
        )
        env = {"E2E_GATEWAY_KEY": GATEWAY_KEY, "E2E_ADMIN_KEY": ADMIN_KEY}
        with GatewayProcess(
            config, log_dir=tmp_path, env=env, args=["--workers", "2", "--log-format", "json"]
        ) as process:
            wait_until(  # /health answered by one worker; the other may still be starting
                lambda: process.stderr.count("Application startup complete.") >= 2, 10, message="both workers"
            )
            yield process
        assert GATEWAY_KEY not in process.output and ADMIN_KEY not in process.output


def _client(gateway: GatewayProcess, key: str | None = GATEWAY_KEY) -> httpx.Client:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=gateway.url, headers=headers, trust_env=False, timeout=20)


def _events(text: str) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {")]


def _seen(path: str, stream: bool, response: httpx.Response) -> tuple[int, int]:
    """(prompt, completion) tokens as the client was told them, in the protocol's own shapes."""
    if path == "/v1/messages":
        if not stream:
            usage = response.json()["usage"]
            prompt = sum(
                usage.get(key) or 0
                for key in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
            )
            return prompt, usage["output_tokens"]
        events = _events(response.text)
        start = next(event for event in events if event["type"] == "message_start")["message"]["usage"]
        delta = [event for event in events if event["type"] == "message_delta"][-1]["usage"]
        prompt = sum(
            (delta.get(key) if key in delta else start.get(key)) or 0
            for key in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
        )
        return prompt, delta["output_tokens"]
    if stream:
        events = _events(response.text)
        usage = next(event for event in events if event["type"] == "response.completed")["response"]["usage"]
    else:
        usage = response.json()["usage"]
    return usage["input_tokens"], usage["output_tokens"]


def _metric(text: str, family: str, **labels: str) -> float:
    """The sum of the series of ``family`` whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(family + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _access_lines(gateway: GatewayProcess) -> dict[str, dict[str, Any]]:
    lines = {}
    for line in gateway.stderr.splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if record.get("logger") == "gateway_server.access":
                lines[record["request_id"]] = record
    return lines


CASES = [
    (
        "/v1/messages",
        "claude",
        {"max_tokens": 50, "messages": [{"role": "user", "content": PROMPT}]},
    ),  # native
    (
        "/v1/messages",
        "gpt",
        {"max_tokens": 50, "messages": [{"role": "user", "content": PROMPT}]},
    ),  # translated
    ("/v1/responses", "gpt", {"input": PROMPT}),  # native
    ("/v1/responses", "claude", {"input": PROMPT}),  # translated
]


def test_agent_tokens_and_time_to_first_token_are_counted(gateway: GatewayProcess) -> None:
    seen: dict[str, list[int]] = {"claude": [0, 0], "gpt": [0, 0]}
    streams = {"claude": 0, "gpt": 0}
    per_request: dict[str, tuple[int, int]] = {}
    for path, route, body in CASES:
        for stream in (False, True):
            with _client(gateway) as client:  # a new connection: both workers serve some
                response = client.post(path, json={**body, "model": route, "stream": stream})
            assert response.status_code == 200, (path, route, stream, response.text)
            assert GENERATED.fullmatch(response.headers["x-request-id"]), response.headers
            prompt, completion = _seen(path, stream, response)
            assert prompt > 0 and completion > 0, (path, route, stream, response.text)
            seen[route][0] += prompt
            seen[route][1] += completion
            streams[route] += stream
            per_request[response.headers["x-request-id"]] = (prompt, completion)

    with _client(gateway) as client:
        text = client.get("/metrics").text
    for route, (prompt, completion) in seen.items():
        assert _metric(text, "gateway_tokens_total", route=route, kind="prompt", key="team-a") == prompt, (
            route
        )
        assert (
            _metric(text, "gateway_tokens_total", route=route, kind="completion", key="team-a") == completion
        ), route
        assert _metric(text, "gateway_time_to_first_token_seconds_count", route=route) == streams[route]
        assert _metric(text, "gateway_requests_total", route=route, status="200") == 4

    wait_until(lambda: len(_access_lines(gateway).keys() & per_request.keys()) == 8, 5, message="8 lines")
    lines = _access_lines(gateway)
    assert len({lines[request_id]["pid"] for request_id in per_request}) == 2, "one worker served all"
    for request_id, (prompt, completion) in per_request.items():
        line = lines[request_id]
        assert (line["prompt_tokens"], line["completion_tokens"]) == (prompt, completion), line
        assert line["provider"] in ("anthropic", "openai") and line["model"] in ("claude-x", "gpt-4.1")


def test_every_response_carries_a_request_id(gateway: GatewayProcess) -> None:
    with (
        _client(gateway, key=None) as anonymous,
        _client(gateway) as client,
        _client(gateway, ADMIN_KEY) as admin,
    ):
        answers = {
            "health": anonymous.get("/health"),
            "metrics": anonymous.get("/metrics"),
            "stats 401": anonymous.get("/api/2.0/gateway/stats"),
            "stats": client.get("/api/2.0/gateway/stats"),
            "routes": client.get("/api/2.0/gateway/routes/"),
            "route 404": client.get("/api/2.0/gateway/routes/nope"),
            "admin 403": client.post("/api/2.0/gateway/routes/", json={"name": "x"}),
            "admin 400": admin.post("/api/2.0/gateway/routes/", json={"name": "x"}),
            "no such path": client.get("/no/such/path"),
            "openapi": client.get("/openapi.json"),
            "responses 404": client.get("/v1/responses/resp_unknown"),
            "messages 404": client.post(
                "/v1/messages", json={"model": "nope", "max_tokens": 5, "messages": []}
            ),
            "responses 400": client.post("/v1/responses", json={"model": "gpt"}),
            "invocation 401": anonymous.post("/v1/chat/completions", json={"model": "gpt", "messages": []}),
        }
        echoed = client.get("/health", headers={"x-request-id": "probe-17"})
    for name, response in answers.items():
        request_id = response.headers.get("x-request-id")
        assert request_id is not None and GENERATED.fullmatch(request_id), (name, response.headers)
        if response.status_code >= 400:
            body = response.json()
            if name.startswith("messages"):  # Anthropic's shape: beside "error", as Anthropic does
                assert body["type"] == "error" and body["request_id"] == request_id, (name, body)
            else:  # the gateway's envelope and OpenAI's (Responses): error.request_id
                assert body["error"]["request_id"] == request_id, (name, body)
    assert answers["health"].status_code == 200 and answers["routes"].status_code == 200
    assert answers["admin 403"].status_code == 403 and answers["admin 400"].status_code == 400
    assert answers["no such path"].status_code == 404 and answers["responses 404"].status_code == 404
    assert echoed.headers["x-request-id"] == "probe-17"  # a caller's safe id is kept, here too
