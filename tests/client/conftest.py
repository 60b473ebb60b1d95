"""Client tests run against ``mock_gateway.Recorder`` (an httpx.MockTransport handler) or a real app."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gatewayctl import _uri


@pytest.fixture(autouse=True)
def _no_stored_uri() -> Iterator[None]:
    """No test sees a URI stored by set_gateway_uri() in another."""
    _uri._reset_gateway_uri()
    yield
    _uri._reset_gateway_uri()
