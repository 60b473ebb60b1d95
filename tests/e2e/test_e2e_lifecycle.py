"""``gatewayctl serve`` as an operator runs it: it starts, serves, and SIGTERM ends it with exit 0
within a few seconds, without a traceback. (Draining in-flight requests and streams on SIGTERM is
covered against the runner itself in ``test_shutdown.py``.)
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from gateway_server.testing.process import GatewayProcess

pytestmark = pytest.mark.e2e

CONFIG = """\
routes:
  - name: chat
    route_type: llm/v1/chat
    model: {provider: fake, name: fake-model}
"""


def test_sigterm_exits_0_within_a_few_seconds(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    process = GatewayProcess(config, log_dir=tmp_path).start()
    try:
        assert process.alive
        with httpx.Client(base_url=process.url, trust_env=False, timeout=10) as http:
            response = http.post(
                "/gateway/chat/invocations", json={"messages": [{"role": "user", "content": "hi"}]}
            )
        assert response.status_code == 200, response.text
        code, seconds = process.terminate(timeout=10)
    finally:
        process.stop()
    assert code == 0, f"exit code {code} after SIGTERM ({process.launcher}):\n{process.output}"
    assert seconds < 5, f"took {seconds:.1f}s to exit after SIGTERM"
    assert "Traceback" not in process.output, process.output
    assert f"serving 1 route(s) from {config}" in process.output  # the runner's own line is printed
