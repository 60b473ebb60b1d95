"""Token limits, call limits, key limits and budgets through a real `gatewayctl serve` process.

Every limit kind is checked at its exact boundary on every path family (/gateway, /endpoints,
/v1/*), streams included; each case counts under a gateway key of its own, so the windows and
budgets of one case never touch another's. Windows are an hour long: the sliding-window counter is
exact while a test stays inside one window.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from governance_support import (
    FAMILIES,
    PAYLOADS,
    admitted_until_refused,
    invoke,
    tokens_per_request,
    usage,
)

from gateway_server.routes import RouteType
from gateway_server.testing import FakeOpenAI
from gateway_server.testing.process import GatewayProcess

pytestmark = pytest.mark.e2e

ADMIN = "key-admin-governance"
PRICE = {"input": 1000.0, "output": 2000.0}  # USD per 1M tokens: dear, so a few requests add up
OPENAI_KEY = "sk-governance-e2e"

CASES = [
    (route_type, family, stream)
    for route_type in RouteType
    for family in FAMILIES
    for stream in ((False, True) if route_type is not RouteType.EMBEDDINGS else (False,))
]


def _case_id(case: tuple[RouteType, str, bool]) -> str:
    route_type, family, stream = case
    return f"{route_type.kind}-{family}{'-stream' if stream else ''}"


def _key(kind: str, case: tuple[RouteType, str, bool]) -> str:
    return f"key-{kind}-{_case_id(case)}"


def _fake(route_type: RouteType, name: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "route_type": route_type.value,
        "model": {"provider": "fake", "name": "fake-model", "price": PRICE},
        **extra,
    }


def _per_request(route_type: RouteType, stream: bool) -> int:
    per = tokens_per_request(route_type, stream)
    if route_type is not RouteType.EMBEDDINGS:  # a stream counts what the same answer whole does
        assert per == tokens_per_request(route_type, not stream)
    return per


def _config(openai_base: str, openai_tokens: int) -> dict[str, Any]:
    routes = []
    for route_type in RouteType:
        per = tokens_per_request(route_type)
        # Three requests fill the window exactly: the third is admitted (used < limit), the fourth not.
        routes.append(
            _fake(
                route_type,
                f"tok-{route_type.kind}",
                limit={"tokens": 3 * per, "renewal_period": "hour", "key": "api_key"},
            )
        )
        routes.append(
            _fake(
                route_type,
                f"calls-{route_type.kind}",
                limit=[{"calls": 3, "renewal_period": "hour", "key": "api_key"}],
            )
        )
        routes.append(_fake(route_type, f"open-{route_type.kind}"))
    routes.append(
        {
            "name": "tok-openai",
            "route_type": "llm/v1/chat",
            "model": {
                "provider": "openai",
                "name": "gpt-4o-mini",
                "config": {"openai_api_key": OPENAI_KEY, "openai_api_base": openai_base},
            },
            "limit": {"tokens": 3 * openai_tokens, "renewal_period": "hour", "key": "api_key"},
        }
    )
    chat = tokens_per_request(RouteType.CHAT)
    used = usage(RouteType.CHAT)
    cost = PRICE["input"] * used.prompt + PRICE["output"] * used.completion
    keys = [{"name": "admin", "key": ADMIN, "scopes": ["query", "admin"]}]
    keys += [
        {"name": _key(kind, case), "key": _key(kind, case)}
        for kind in ("tok", "calls", "own")
        for case in CASES
    ]
    keys += [
        {"name": "key-openai-False", "key": "key-openai-False"},
        {"name": "key-openai-True", "key": "key-openai-True"},
        {"name": "key-usd", "key": "key-usd", "budget": {"usd": 2.5 * cost / 1e6, "period": "day"}},
        {
            "name": "key-tokens",
            "key": "key-tokens",
            "budget": {"tokens": math.floor(2.5 * chat), "period": "month"},
        },
        {"name": "key-other", "key": "key-other"},
        {
            "name": "key-own-limit",
            "key": "key-own-limit",
            "limit": {"tokens": 2 * chat, "renewal_period": "hour"},
        },
        {"name": "key-own-calls", "key": "key-own-calls", "limit": [{"calls": 2, "renewal_period": "hour"}]},
    ]
    return {"routes": routes, "auth": {"keys": keys}}


def _openai_tokens(fake: FakeOpenAI) -> int:
    """The fake OpenAI's usage for the chat payload (asked directly, before the gateway exists)."""
    body = {"model": "gpt-4o-mini", **PAYLOADS[RouteType.CHAT]}
    answer = httpx.post(
        f"{fake.api_base}/chat/completions", json=body, headers={"Authorization": f"Bearer {OPENAI_KEY}"}
    )
    answer.raise_for_status()
    return int(answer.json()["usage"]["total_tokens"])


@pytest.fixture(scope="module")
def governed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    workdir = tmp_path_factory.mktemp("governance")
    with FakeOpenAI(api_key=OPENAI_KEY).serve() as fake:
        path = Path(workdir) / "gateway.yaml"
        path.write_text(yaml.safe_dump(_config(fake.api_base, _openai_tokens(fake)), sort_keys=False))
        with GatewayProcess(path, log_dir=workdir, name="governance") as process:
            yield process


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_token_limit_refuses_once_the_window_is_used_up(
    governed: GatewayProcess, case: tuple[RouteType, str, bool]
) -> None:
    route_type, family, stream = case
    key = _key("tok", case)
    admitted, refused = admitted_until_refused(
        lambda: invoke(governed.url, family, f"tok-{route_type.kind}", route_type, key, stream=stream)
    )
    assert admitted == 3, refused.text
    assert refused.status_code == 429
    limit = 3 * _per_request(route_type, stream)
    assert refused.headers["x-ratelimit-limit-tokens"] == str(limit)
    assert refused.headers["x-ratelimit-remaining-tokens"] == "0"
    assert refused.headers["x-ratelimit-reset-tokens"]
    assert int(refused.headers["retry-after"]) >= 1
    error = refused.json()["error"]
    assert error["type"] == "rate_limit_error"
    assert f"allows {limit} tokens per 3600 seconds and {limit} were used" in error["message"]


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_call_limit_in_a_list_refuses_call_n_plus_one(
    governed: GatewayProcess, case: tuple[RouteType, str, bool]
) -> None:
    route_type, family, stream = case
    key = _key("calls", case)
    admitted, refused = admitted_until_refused(
        lambda: invoke(governed.url, family, f"calls-{route_type.kind}", route_type, key, stream=stream)
    )
    assert admitted == 3
    assert refused.status_code == 429 and refused.headers["x-ratelimit-limit"] == "3"


def test_admitted_answers_carry_the_token_headers(governed: GatewayProcess) -> None:
    case = (RouteType.CHAT, "gateway", False)
    per = _per_request(RouteType.CHAT, False)
    first = invoke(governed.url, "gateway", "tok-chat", RouteType.CHAT, _key("own", case))
    second = invoke(governed.url, "gateway", "tok-chat", RouteType.CHAT, _key("own", case))
    assert first.headers["x-ratelimit-remaining-tokens"] == str(3 * per)
    assert second.headers["x-ratelimit-remaining-tokens"] == str(2 * per)
    assert second.headers["x-ratelimit-reset-tokens"].endswith("s")


@pytest.mark.parametrize("stream", [False, True])
def test_token_limit_counts_an_upstream_stream_from_its_final_usage_chunk(
    governed: GatewayProcess, stream: bool
) -> None:
    key = f"key-openai-{stream}"
    admitted, refused = admitted_until_refused(
        lambda: invoke(governed.url, "v1", "tok-openai", RouteType.CHAT, key, stream=stream)
    )
    assert admitted == 3 and refused.status_code == 429


def test_usd_budget_refuses_with_budget_exceeded_until_the_day_ends(governed: GatewayProcess) -> None:
    admitted, refused = admitted_until_refused(
        lambda: invoke(governed.url, "v1", "open-chat", RouteType.CHAT, "key-usd")
    )
    assert admitted == 3  # 2.5 requests' worth: the third is admitted with spend below the budget
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["code"] == "budget_exceeded" and error["type"] == "budget_exceeded"
    assert "the API key 'key-usd' has a budget of $" in error["message"]
    assert "a day (calendar day, UTC)" in error["message"]
    assert 1 <= int(refused.headers["retry-after"]) <= 86400
    # Every path family and route is refused for that key; another key is unaffected.
    for family in ("gateway", "endpoints"):
        assert (
            invoke(governed.url, family, "open-completions", RouteType.COMPLETIONS, "key-usd").status_code
            == 429
        )
        assert invoke(governed.url, family, "open-chat", RouteType.CHAT, "key-other").status_code == 200
    assert invoke(governed.url, "v1", "open-chat", RouteType.CHAT, "key-usd", stream=True).status_code == 429


def test_token_budget_counts_streams_and_refuses_the_key(governed: GatewayProcess) -> None:
    admitted, refused = admitted_until_refused(
        lambda: invoke(governed.url, "endpoints", "open-chat", RouteType.CHAT, "key-tokens", stream=True)
    )
    assert admitted == 3
    error = refused.json()["error"]
    assert error["code"] == "budget_exceeded"
    assert "tokens a month (calendar month, UTC)" in error["message"]


def test_a_keys_own_token_limit_counts_on_every_route(governed: GatewayProcess) -> None:
    url = governed.url
    assert invoke(url, "gateway", "open-chat", RouteType.CHAT, "key-own-limit").status_code == 200
    assert invoke(url, "v1", "open-chat", RouteType.CHAT, "key-own-limit", stream=True).status_code == 200
    refused = invoke(url, "endpoints", "calls-chat", RouteType.CHAT, "key-own-limit")
    assert refused.status_code == 429
    assert "the API key 'key-own-limit' allows" in refused.json()["error"]["message"]


def test_a_keys_own_call_limit_counts_on_every_route(governed: GatewayProcess) -> None:
    url = governed.url
    assert invoke(url, "gateway", "open-chat", RouteType.CHAT, "key-own-calls").status_code == 200
    assert invoke(url, "v1", "open-embeddings", RouteType.EMBEDDINGS, "key-own-calls").status_code == 200
    refused = invoke(url, "v1", "open-completions", RouteType.COMPLETIONS, "key-own-calls")
    assert refused.status_code == 429
    assert (
        "the key 'key-own-calls' allows 2 per 3600 seconds on all routes"
        in refused.json()["error"]["message"]
    )


def test_usage_and_keys_for_admins_only(governed: GatewayProcess) -> None:
    url = governed.url
    invoke(url, "gateway", "open-embeddings", RouteType.EMBEDDINGS, "key-other")
    denied = httpx.get(f"{url}/api/2.0/gateway/usage", headers={"Authorization": "Bearer key-other"})
    assert denied.status_code == 403
    admin = {"Authorization": f"Bearer {ADMIN}"}
    report = httpx.get(
        f"{url}/api/2.0/gateway/usage", params={"by": "route", "since": "1h"}, headers=admin
    ).json()
    routes = [row["route"] for row in report["usage"]]
    assert "open-embeddings" in routes
    costs = [row["cost_usd"] for row in report["usage"]]
    assert costs == sorted(costs, reverse=True)
    keys = httpx.get(f"{url}/api/2.0/gateway/keys", headers=admin).json()["keys"]
    usd = next(key for key in keys if key["name"] == "key-usd")
    assert usd["budget"]["period"] == "day" and usd["spent"] > 0 and "key" not in usd
    assert "key-usd" not in str([key.get("key_sha256") for key in keys])
    bad = httpx.get(f"{url}/api/2.0/gateway/usage", params={"since": "yesterday-ish"}, headers=admin)
    assert bad.status_code == 400 and "since" in bad.json()["error"]["message"]
