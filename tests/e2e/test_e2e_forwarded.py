"""``serve --forwarded-allow-ips``: X-Forwarded-For is believed only from the proxies named, nobody by default.

Uvicorn's own default trusts 127.0.0.1, so that every client of a proxy on the same host could
choose its own ``client_ip`` (and dodge a per-client rate limit) by sending the header itself.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from gateway_server.testing.process import GatewayProcess

pytestmark = pytest.mark.e2e

CONFIG = """\
routes:
  - name: per-client
    route_type: llm/v1/chat
    model: {provider: fake, name: fake-chat}
    limit: {calls: 1, renewal_period: minute, key: client_ip}
"""
CHAT = {"messages": [{"role": "user", "content": "hi"}]}


def _statuses(tmp_path: Path, name: str, args: list[str]) -> list[int]:
    config = tmp_path / f"{name}.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    with (
        GatewayProcess(config, log_dir=tmp_path, name=name, args=args) as gateway,
        httpx.Client(base_url=gateway.url, timeout=10) as http,
    ):
        return [
            http.post(
                "/gateway/per-client/invocations", json=CHAT, headers={"X-Forwarded-For": spoofed}
            ).status_code
            for spoofed in ("203.0.113.1", "203.0.113.2")
        ]


def test_forwarded_for_is_not_trusted_by_default(tmp_path: Path) -> None:
    # Two "clients" that are one peer (127.0.0.1): the second call is over the limit.
    assert _statuses(tmp_path, "default", []) == [200, 429]


def test_forwarded_for_is_trusted_from_the_named_proxies(tmp_path: Path) -> None:
    assert _statuses(tmp_path, "trusting", ["--forwarded-allow-ips", "127.0.0.1"]) == [200, 200]
