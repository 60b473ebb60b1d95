"""Testing helpers shipped with the package: used by the test suite, ``bench/`` and the offline demo.

- :mod:`~gateway_server.testing.server`: run any ASGI app under uvicorn in a background thread on
  127.0.0.1 and a free port (:class:`ServerThread`, :func:`serve_in_thread`, :func:`free_port`),
  plus deadline-bounded polling (:func:`wait_until`, :func:`wait_for_port`).
- :mod:`~gateway_server.testing.fake_upstreams`: :class:`FakeUpstream`, the base of the vendor
  fakes: every request is recorded as a :class:`RecordedRequest`, and a :class:`Fault` can be
  injected per call or persistently (error status, delay, non-JSON, dropped connection, cut stream).
- :mod:`~gateway_server.testing.redis_server`: :class:`RedisServer`, a throw-away ``redis-server``
  on 127.0.0.1 for ``server.shared_state`` tests (imported from its module: it needs redis-py).
- one module per vendor fake: :class:`FakeOpenAI` (OpenAI and Azure OpenAI paths).

Typical use::

    with FakeOpenAI().serve() as fake:
        fake.inject(Fault.rate_limited(retry_after=1))  # the next call gets a 429
        ...  # point openai_api_base at fake.api_base, call the gateway
        assert fake.last_request.headers["authorization"] == "Bearer sk-test"
"""

from gateway_server.testing.fake_openai import FakeOpenAI, count_tokens, fake_embedding
from gateway_server.testing.fake_upstreams import (
    ConnectionDroppedError,
    FakeUpstream,
    Fault,
    RecordedRequest,
    Reply,
    Route,
    Stream,
    sse,
)
from gateway_server.testing.server import ServerThread, free_port, serve_in_thread, wait_for_port, wait_until

__all__ = [
    "ConnectionDroppedError",
    "FakeOpenAI",
    "FakeUpstream",
    "Fault",
    "RecordedRequest",
    "Reply",
    "Route",
    "ServerThread",
    "Stream",
    "count_tokens",
    "fake_embedding",
    "free_port",
    "serve_in_thread",
    "sse",
    "wait_for_port",
    "wait_until",
]
