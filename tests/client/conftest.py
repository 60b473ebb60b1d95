"""Client tests run against ``mock_gateway.Recorder`` (an httpx.MockTransport handler), never a socket."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from mock_gateway import Recorder

from gatewayctl import _uri


@pytest.fixture(autouse=True)
def _no_stored_uri() -> Iterator[None]:
    _uri._reset_gateway_uri()
    yield
    _uri._reset_gateway_uri()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()
