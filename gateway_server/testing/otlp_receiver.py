"""A small OTLP/HTTP trace receiver: what an OpenTelemetry collector does with ``POST /v1/traces``,
decoded into plain :class:`ReceivedSpan` records for tests to assert on::

    with OtlpReceiver().serve() as receiver:
        ...  # OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url
        span = receiver.wait_for_span(lambda s: s.name.startswith("chat "))
        assert span.attributes["gen_ai.request.model"] == "gpt-4o-mini"

It accepts the binary protobuf encoding (``application/x-protobuf``, what the OTLP/HTTP exporter
sends, gzip or not) and decodes ``ExportTraceServiceRequest`` with the message classes of
``opentelemetry-proto`` (installed with ``gatewayctl[otel]``): a real wire format, not a mock of
our own code. Anything else answers 415; a body that does not decode answers 400.
"""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from gateway_server.testing.server import serve_in_thread

__all__ = ["OtlpReceiver", "ReceivedSpan"]

_KINDS = {0: "unspecified", 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}


@dataclass(frozen=True)
class ReceivedSpan:
    name: str
    kind: str  # server, client, ...
    trace_id: str  # 32 hex digits
    span_id: str  # 16 hex digits
    parent_span_id: str  # "" for a root span
    attributes: dict[str, Any] = field(default_factory=dict)
    resource: dict[str, Any] = field(default_factory=dict)
    status_code: int = 0  # 0 unset, 1 ok, 2 error


def _value(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return [_value(item) for item in any_value.array_value.values]
    if kind == "kvlist_value":
        return {item.key: _value(item.value) for item in any_value.kvlist_value.values}
    return getattr(any_value, kind) if kind else None


def _attributes(items: Any) -> dict[str, Any]:
    return {item.key: _value(item.value) for item in items}


def decode(body: bytes) -> list[ReceivedSpan]:
    """Every span of one ``ExportTraceServiceRequest`` (protobuf bytes)."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    spans = []
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    ReceivedSpan(
                        name=span.name,
                        kind=_KINDS.get(span.kind, str(span.kind)),
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex(),
                        attributes=_attributes(span.attributes),
                        resource=resource,
                        status_code=span.status.code,
                    )
                )
    return spans


class OtlpReceiver:
    """Collects the spans exported to it; thread-safe."""

    def __init__(self) -> None:
        self._spans: list[ReceivedSpan] = []
        self._lock = threading.Lock()
        self.url = ""

    @property
    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self._spans)

    def wait_for_span(self, predicate: Callable[[ReceivedSpan], bool], timeout: float = 10.0) -> ReceivedSpan:
        deadline = time.monotonic() + timeout
        while True:
            for span in self.spans:
                if predicate(span):
                    return span
            if time.monotonic() >= deadline:
                names = [span.name for span in self.spans]
                raise TimeoutError(f"no matching span within {timeout:g}s; received: {names}")
            time.sleep(0.02)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        headers = {name.decode().lower(): value.decode() for name, value in scope["headers"]}
        status = 200
        if scope["path"] != "/v1/traces" or scope["method"] != "POST":
            status = 404
        elif "protobuf" not in headers.get("content-type", ""):
            status = 415
        else:
            try:
                if headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                spans = decode(body)
            except Exception:  # a body that is not OTLP: what a collector answers
                status = 400
            else:
                with self._lock:
                    self._spans.extend(spans)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/x-protobuf"), (b"content-length", b"0")],
            }
        )
        await send({"type": "http.response.body", "body": b""})

    @contextmanager
    def serve(self) -> Iterator[OtlpReceiver]:
        with serve_in_thread(self) as server:
            self.url = server.url
            yield self
