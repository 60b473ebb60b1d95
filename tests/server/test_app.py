"""The app in-process (uvicorn in a thread), against the fake OpenAI upstream and the fake provider."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway_server.app import create_app
from gateway_server.config import parse_config
from gateway_server.testing import FakeOpenAI, Fault, serve_in_thread

SENTINEL = "sk-SENTINEL-never-leak-0000"
ROOT = Path(__file__).resolve().parents[2]


def _config(api_base: str, dead_port_base: str) -> str:
    openai = f"{{openai_api_key: {SENTINEL}, openai_api_base: '{api_base}'}}"
    return f"""
routes:
  - name: chat
    route_type: llm/v1/chat
    model: {{provider: openai, name: gpt-4o-mini, config: {openai}}}
  - name: completions
    route_type: llm/v1/completions
    model: {{provider: openai, name: gpt-3.5-turbo-instruct, config: {openai}}}
  - name: embeddings
    route_type: llm/v1/embeddings
    model: {{provider: openai, name: text-embedding-3-small, config: {openai}}}
  - name: slow
    route_type: llm/v1/chat
    timeout: 0.3
    model: {{provider: openai, name: gpt-4o-mini, config: {openai}}}
  - name: dead
    route_type: llm/v1/chat
    model: {{provider: openai, name: m, config: {{openai_api_key: {SENTINEL}, openai_api_base: '{dead_port_base}'}}}}
  - name: offline
    route_type: llm/v1/chat
    model: {{provider: fake, name: fake-chat}}
server:
  max_request_bytes: 2000
"""


@pytest.fixture(scope="module")
def gateway(fake_openai_server: FakeOpenAI) -> Iterator[httpx.Client]:
    from gateway_server.testing import free_port

    config = parse_config(
        _config(fake_openai_server.api_base, f"http://127.0.0.1:{free_port()}/v1"), "test.yaml"
    )
    with (
        serve_in_thread(create_app(config)) as server,
        httpx.Client(base_url=server.url, timeout=10) as client,
    ):
        yield client


@pytest.fixture
def seen() -> list[httpx.Response]:
    return []


@pytest.fixture
def call(gateway: httpx.Client, fake_openai: FakeOpenAI, seen: list[httpx.Response]):
    def do(method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = gateway.request(method, path, **kwargs)
        seen.append(response)
        return response

    yield do
    for response in seen:  # the key never leaves the process except to its own upstream
        assert SENTINEL not in response.text
        assert all(SENTINEL not in value for value in response.headers.values())


CHAT = {"messages": [{"role": "user", "content": "Tell me a joke"}]}


def test_app_health_and_docs(call) -> None:
    assert call("GET", "/health").json() == {"status": "OK"}
    assert call("GET", "/docs").status_code == 200
    schema = call("GET", "/openapi.json").json()
    for path in (
        "/gateway/{name}/invocations",
        "/endpoints/{name}/invocations",
        "/v1/chat/completions",
        "/api/2.0/gateway/routes/",
        "/api/2.0/endpoints/{name}",
    ):
        assert path in schema["paths"], path


def test_app_lists_routes_without_config(call) -> None:
    body = call("GET", "/api/2.0/gateway/routes/").json()
    assert [r["name"] for r in body["routes"]] == [
        "chat",
        "completions",
        "embeddings",
        "slow",
        "dead",
        "offline",
    ]
    assert body["routes"][0] == {
        "name": "chat",
        "route_type": "llm/v1/chat",
        "model": {"name": "gpt-4o-mini", "provider": "openai"},
        "route_url": "/gateway/chat/invocations",
    }
    assert "next_page_token" not in body
    assert "config" not in call("GET", "/api/2.0/gateway/routes/").text


def test_app_pages_routes(call) -> None:
    first = call("GET", "/api/2.0/gateway/routes/", params={"max_results": 4}).json()
    assert len(first["routes"]) == 4
    second = call(
        "GET", "/api/2.0/gateway/routes/", params={"max_results": 4, "page_token": first["next_page_token"]}
    )
    assert [r["name"] for r in second.json()["routes"]] == ["dead", "offline"]
    assert "next_page_token" not in second.json()
    bad = call("GET", "/api/2.0/gateway/routes/", params={"page_token": "garbage"})
    assert bad.status_code == 400 and "page_token" in bad.json()["error"]["message"]


def test_app_get_route_and_endpoint(call) -> None:
    assert call("GET", "/api/2.0/gateway/routes/embeddings").json()["route_type"] == "llm/v1/embeddings"
    endpoint = call("GET", "/api/2.0/endpoints/chat").json()
    assert endpoint == {
        "name": "chat",
        "endpoint_type": "llm/v1/chat",
        "model": {"name": "gpt-4o-mini", "provider": "openai"},
        "endpoint_url": "/endpoints/chat/invocations",
        "limit": None,
    }
    missing = call("GET", "/api/2.0/gateway/routes/nope")
    assert missing.status_code == 404
    assert missing.json()["detail"] == (
        "The route 'nope' is not present or active on the server. Please verify the route name."
    )


def test_app_seed_chat_shape(call, fake_openai: FakeOpenAI) -> None:
    response = call(
        "POST", "/gateway/chat/invocations", json={**CHAT, "candidate_count": 2, "temperature": 0.1}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert fake_openai.last_request.json == {**CHAT, "n": 2, "temperature": 0.1, "model": "gpt-4o-mini"}
    assert len(body["candidates"]) == 2
    assert body["candidates"][0]["message"]["role"] == "assistant"
    assert body["candidates"][0]["metadata"] == {"finish_reason": "stop"}
    assert body["metadata"]["route_type"] == "llm/v1/chat"
    assert body["metadata"]["model"] == "gpt-4o-mini"
    assert (
        body["metadata"]["total_tokens"]
        == body["metadata"]["input_tokens"] + body["metadata"]["output_tokens"]
    )
    assert float(response.headers["x-gateway-overhead-ms"]) >= 0


def test_app_seed_completions_and_embeddings(call, fake_openai: FakeOpenAI) -> None:
    completion = call(
        "POST", "/gateway/completions/invocations", json={"prompt": "It's one small step for"}
    ).json()
    assert isinstance(completion["candidates"][0]["text"], str)
    embeddings = call(
        "POST", "/gateway/embeddings/invocations", json={"text": ["best of times", "worst"]}
    ).json()
    assert fake_openai.last_request.json == {
        "input": ["best of times", "worst"],
        "model": "text-embedding-3-small",
    }
    assert len(embeddings["embeddings"]) == 2 and isinstance(embeddings["embeddings"][0][0], float)
    assert embeddings["metadata"]["route_type"] == "llm/v1/embeddings"


def test_app_endpoints_and_v1_openai_shapes(call, fake_openai: FakeOpenAI) -> None:
    endpoint = call("POST", "/endpoints/chat/invocations", json={**CHAT, "model": "ignored"})
    assert endpoint.status_code == 200
    assert fake_openai.last_request.json["model"] == "gpt-4o-mini"  # the caller's model is ignored
    body = endpoint.json()
    assert body["object"] == "chat.completion" and body["id"] and body["created"]
    v1 = call("POST", "/v1/embeddings", json={"model": "embeddings", "input": "hi"}).json()
    assert v1["object"] == "list" and v1["data"][0]["object"] == "embedding"
    models = call("GET", "/v1/models").json()
    assert {m["id"] for m in models["data"]} >= {"chat", "embeddings"}


def test_app_offline_fake_provider(call) -> None:
    body = call("POST", "/gateway/offline/invocations", json=CHAT).json()
    assert (
        body["candidates"][0]["message"]["content"] == "This is the fake provider answering: Tell me a joke"
    )


@pytest.mark.parametrize(
    ("path", "kwargs", "status", "needle"),
    [
        ("/gateway/chat/invocations", {"content": b"{not json"}, 400, "not valid JSON"),
        ("/gateway/chat/invocations", {"json": [1, 2]}, 400, "must be a JSON object"),
        ("/gateway/chat/invocations", {"json": {"messages": "hi"}}, 400, "'messages'"),
        ("/gateway/chat/invocations", {"json": {**CHAT, "temperature": "hot"}}, 400, "'temperature'"),
        ("/gateway/chat/invocations", {"json": {**CHAT, "max_tokens": 0}}, 400, "'max_tokens'"),
        ("/gateway/completions/invocations", {"json": {"prompt": 5}}, 400, "'prompt'"),
        ("/gateway/embeddings/invocations", {"json": {}}, 400, "Missing 'input'"),
        ("/gateway/nope/invocations", {"json": CHAT}, 404, "The route 'nope' is not present"),
        ("/endpoints/nope/invocations", {"json": CHAT}, 404, "The endpoint 'nope' is not present"),
        ("/v1/chat/completions", {"json": CHAT}, 400, "Missing 'model'"),
        (
            "/v1/chat/completions",
            {"json": {**CHAT, "model": "embeddings"}},
            400,
            "is a llm/v1/embeddings route",
        ),
        ("/v1/chat/completions", {"json": {**CHAT, "model": "nope"}}, 404, "'nope'"),
    ],
)
def test_app_bad_requests(call, path: str, kwargs: dict[str, Any], status: int, needle: str) -> None:
    response = call("POST", path, **kwargs)
    assert response.status_code == status, response.text
    body = response.json()
    assert needle in body["error"]["message"]
    assert body["detail"] == body["error"]["message"] and body["error"]["code"] == status


def test_app_overhead_header_is_on_every_invocation_answer_and_only_there(call) -> None:
    # README: invocation answers (success or error, /gateway, /endpoints, /v1) carry it; /health,
    # listings and docs do not.
    for response in (
        call("POST", "/gateway/chat/invocations", json=CHAT),
        call("POST", "/gateway/nope/invocations", json=CHAT),
        call("POST", "/v1/chat/completions", json={**CHAT, "model": "chat"}),
    ):
        assert float(response.headers["x-gateway-overhead-ms"]) >= 0, response.text
    for path in ("/health", "/api/2.0/gateway/routes/", "/v1/models"):
        assert "x-gateway-overhead-ms" not in call("GET", path).headers, path


def test_app_wrong_method(call) -> None:
    response = call("GET", "/gateway/chat/invocations")
    assert response.status_code == 405 and "use POST" in response.json()["error"]["message"]
    assert call("DELETE", "/health").status_code == 405
    assert call("GET", "/no/such/path").status_code == 404


@pytest.mark.parametrize(
    ("fault", "status", "needle"),
    [
        (Fault.error(400, body={"error": {"message": "bad param foo"}}), 400, "bad param foo"),
        (Fault.error(401), 502, "HTTP 401"),
        (Fault.rate_limited(retry_after=3), 429, "HTTP 429"),
        (Fault.error(500, body={"error": {"message": "boom"}}), 502, "boom"),
        (Fault.not_json(), 502, "expected JSON"),
        (Fault.drop_mid_body(), 502, "broke before a complete answer"),
    ],
)
def test_app_upstream_failures(call, fake_openai: FakeOpenAI, fault: Fault, status: int, needle: str) -> None:
    fake_openai.inject(fault)
    response = call("POST", "/gateway/chat/invocations", json=CHAT)
    assert response.status_code == status, response.text
    assert needle in response.json()["error"]["message"]
    if status == 429:
        assert response.headers["retry-after"] == "3"


def test_app_upstream_timeout_and_refused(call, fake_openai: FakeOpenAI) -> None:
    fake_openai.inject(Fault.slow(1.5))
    slow = call("POST", "/gateway/slow/invocations", json=CHAT)
    assert slow.status_code == 504 and "did not answer within 0.3 s" in slow.json()["error"]["message"]
    dead = call("POST", "/gateway/dead/invocations", json=CHAT)
    assert dead.status_code == 502 and "could not connect to openai" in dead.json()["error"]["message"]


def test_app_metrics_count_requests_by_route_and_status(call) -> None:
    call("POST", "/gateway/offline/invocations", json=CHAT)
    call("POST", "/gateway/never-configured/invocations", json=CHAT)
    text = call("GET", "/metrics").text
    assert 'gateway_requests_total{route="offline",status="200"}' in text
    assert 'gateway_requests_total{status="404"} ' in text  # no route: the label is left out
    assert "never-configured" not in text  # unknown names do not grow the label set
    assert 'gateway_overhead_seconds_bucket{route="offline",le="+Inf"}' in text
    assert "# TYPE gateway_request_duration_seconds histogram" in text


def test_fastapi_is_built_only_when_a_request_needs_it() -> None:
    """Invocations, /health and /metrics are answered by the bare layer; the first listing builds
    FastAPI (and only then)."""
    app = create_app(parse_config(_config("http://127.0.0.1:9/v1", "http://127.0.0.1:9/v1"), "test.yaml"))
    with serve_in_thread(app) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        assert client.post("/gateway/offline/invocations", json=CHAT).status_code == 200
        assert client.get("/health").json() == {"status": "OK"}
        metrics = client.get("/metrics")
        assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
        assert 'gateway_requests_total{route="offline",status="200"}' in metrics.text
        assert app._api is None and app._api_build is None
        assert client.get("/api/2.0/gateway/routes/offline").status_code == 200
        assert app._api is not None


def test_a_serving_process_loads_only_what_the_hot_path_needs() -> None:
    """Start-up time and memory (docs/performance.md): serving the quick-start config must not
    import FastAPI/Starlette (built on first use), the admin code, the limits package, Redis,
    botocore, aiohttp (not used by the server) or the CLI's httpx/rich."""
    code = (
        "import sys\n"
        "import gateway_server.runner\n"
        "from gateway_server.app import create_app_from_path\n"
        "create_app_from_path('sample-configs/quickstart.yaml', reload_interval=None)\n"
        "heavy = {'aiohttp', 'fastapi', 'starlette', 'limits', 'redis', 'botocore', 'httpx', 'rich', 'ruamel',\n"
        "         'opentelemetry'}\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True, cwd=ROOT
    )
    assert result.stdout.strip() == "[]"


def test_app_docs_render_offline_with_assets_served_by_the_gateway(call) -> None:
    import re

    for page in ("/docs", "/redoc"):
        response = call("GET", page)
        assert response.status_code == 200, page
        html = response.text
        urls = re.findall(r"""(?:src|href)=["']([^"']+)["']|url: ?["']([^"']+)["']""", html)
        urls = [a or b for a, b in urls]
        assert urls, html
        assert not [url for url in urls if "://" in url], f"{page} loads from elsewhere: {urls}"
        for url in urls:
            asset = call("GET", url)
            assert asset.status_code == 200 and asset.content, (page, url)
    assert (
        call("GET", "/docs/assets/swagger-ui-bundle.js")
        .headers["content-type"]
        .startswith(("application/javascript", "text/javascript"))
    )



def test_a_body_over_max_request_bytes_is_413_before_it_is_read(gateway: httpx.Client) -> None:
    """The declared length alone is refused, and the connection closes (the body is not read).
    Sent as a head only: a caller still sending a refused body can get a TCP reset that destroys
    the 413 before it is read, which made this case flaky inside the table above."""
    import socket

    sock = socket.create_connection((gateway.base_url.host, gateway.base_url.port), timeout=5)
    with sock:
        sock.sendall(
            b"POST /gateway/chat/invocations HTTP/1.1\r\nhost: x\r\n"
            b"content-type: application/json\r\ncontent-length: 3000\r\n\r\n"
        )
        data = b""
        while piece := sock.recv(65536):
            data += piece
    head, body = data.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 413") and b"connection: close" in head.lower()
    assert "at most 2000 (server.max_request_bytes in its config)" in json.loads(body)["error"]["message"]
