"""OpenTelemetry traces, when configured: one server span per invocation, one client span per
upstream attempt, with the GenAI semantic conventions, exported over OTLP/HTTP.

Configured by ``server.otel`` in the config (``endpoint``, ``service_name``, ``sample_ratio``) or by
the standard variables (``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``,
plus ``OTEL_EXPORTER_OTLP_HEADERS``, ``OTEL_SERVICE_NAME``, ``OTEL_BSP_*``); ``OTEL_SDK_DISABLED=true``
turns it off. The packages are an optional extra, ``pip install 'gatewayctl[otel]'``, imported
only by :func:`build_tracer`, so a gateway without tracing never loads them and pays one
``is None`` test per request and per attempt.

- The caller's W3C ``traceparent`` (and ``tracestate``) is the server span's parent; each
  attempt's client span is sent upstream as ``traceparent``, so the upstream's spans join the trace.
- Server span ``POST <path template>`` (``http.request.method``, ``url.path``,
  ``http.response.status_code``, ``gateway.route``, ``gateway.request_id``, ``gateway.key``).
- Client span ``<operation> <model>`` (``gen_ai.operation.name``, ``gen_ai.system``,
  ``gen_ai.request.model``, ``gen_ai.response.model``, ``gen_ai.usage.input_tokens``,
  ``gen_ai.usage.output_tokens``, ``gen_ai.response.finish_reasons``; ``error.type`` when it
  failed). The successful attempt's span ends when its answer does (a stream's last chunk).
- Spans are exported in batches by a background thread; the lifespan flushes them on shutdown.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway_server.config import GatewayConfig
    from gateway_server.observability import Attempt, Record
    from gateway_server.reliability import Target

__all__ = ["OTEL_EXTRA_HINT", "Tracer", "build_tracer", "tracing_configured"]

OTEL_EXTRA_HINT = "install the optional extra: pip install 'gatewayctl[otel]'"
_ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
_TEMPLATES = {"gateway": "/gateway/{name}/invocations", "endpoints": "/endpoints/{name}/invocations"}
# gen_ai.system values of the semantic conventions, where they differ from our provider names.
_SYSTEMS = {"bedrock": "aws.bedrock", "gemini": "gcp.gemini", "mistral": "mistral_ai"}
_OPERATIONS = {
    "llm/v1/chat": "chat",
    "llm/v1/completions": "text_completion",
    "llm/v1/embeddings": "embeddings",
}


def tracing_configured(config: GatewayConfig) -> bool:
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    return config.server.otel is not None or any(os.environ.get(name) for name in _ENDPOINT_VARS)


def build_tracer(config: GatewayConfig) -> Tracer | None:
    """A tracer exporting to the configured endpoint, or None when tracing is not configured.
    Raises ImportError naming the extra when it is configured but not installed."""
    if not tracing_configured(config):
        return None
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
    except ImportError as exc:
        raise ImportError(
            f"tracing is configured but OpenTelemetry is missing ({exc}); {OTEL_EXTRA_HINT}"
        ) from exc
    otel = config.server.otel
    endpoint = None
    service = os.environ.get("OTEL_SERVICE_NAME") or "gatewayctl"
    ratio = 1.0
    if otel is not None:
        endpoint = otel.endpoint.rstrip("/") + "/v1/traces"
        service, ratio = otel.service_name, otel.sample_ratio
    provider = TracerProvider(
        resource=Resource.create({"service.name": service}),
        sampler=ParentBased(TraceIdRatioBased(ratio)),
    )
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    return Tracer(provider)


class Tracer:
    """What :class:`~gateway_server.observability.Record` calls when tracing is on."""

    def __init__(self, provider: Any) -> None:
        from opentelemetry import trace
        from opentelemetry.trace import SpanKind, Status, StatusCode
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.provider = provider
        self._tracer = provider.get_tracer("gatewayctl")
        self._trace = trace
        self._propagator = TraceContextTextMapPropagator()
        self._server, self._client = SpanKind.SERVER, SpanKind.CLIENT
        self._error = Status(StatusCode.ERROR)

    def start_request(self, record: Record, scope: dict[str, Any]) -> None:
        record.tracer = self
        carrier = {}
        for name, value in scope["headers"]:
            if name in (b"traceparent", b"tracestate"):
                carrier[name.decode()] = value.decode("latin-1")
        parent = self._propagator.extract(carrier) if carrier else None
        path = scope["path"]
        record.span = self._tracer.start_span(
            f"POST {_TEMPLATES.get(record.family, path)}",
            context=parent,
            kind=self._server,
            attributes={
                "http.request.method": scope["method"],
                "url.path": path,
                "gateway.request_id": record.request_id,
            },
        )

    def attempt_span(self, record: Record, target: Target) -> Any:
        adapter = target.adapter
        operation = _OPERATIONS.get(record.route_type.value if record.route_type else "", "chat")
        model = adapter.model_name or ""
        return self._tracer.start_span(
            f"{operation} {model}".strip(),
            context=self._trace.set_span_in_context(record.span),
            kind=self._client,
            attributes={
                "gen_ai.operation.name": operation,
                "gen_ai.system": _SYSTEMS.get(adapter.name, adapter.name),
                "gen_ai.request.model": model,
                "gateway.route": record.route,
            },
        )

    def end_attempt(self, attempt: Attempt, exc: BaseException | None) -> None:
        span = attempt.span
        if exc is None:
            attempt.end_ns = time.time_ns()  # ended with the answer, in end_request
            return
        span.set_attribute("error.type", attempt.error or type(exc).__name__)
        span.set_status(self._error)
        span.end()
        attempt.span = None

    def inject(self, span: Any, headers: dict[str, str]) -> None:
        self._propagator.inject(headers, context=self._trace.set_span_in_context(span))

    def end_request(self, record: Record, status: int, error: BaseException | None) -> None:
        span = record.span
        attributes: dict[str, Any] = {"http.response.status_code": status, "gateway.route": record.route}
        if record.key:
            attributes["gateway.key"] = record.key
        answer: dict[str, Any] = {}
        if record.served is not None:
            answer["gen_ai.response.model"] = record.response_model or record.served.adapter.model_name or ""
        if record.usage is not None:
            answer["gen_ai.usage.input_tokens"] = record.usage.prompt
            answer["gen_ai.usage.output_tokens"] = record.usage.completion
        if record.finish_reasons:
            answer["gen_ai.response.finish_reasons"] = list(record.finish_reasons)
        for attempt in record.attempts:
            if attempt.span is not None:  # the one that answered
                attempt.span.set_attributes(answer)
                attempt.span.end(end_time=None if record.stream else attempt.end_ns)
                attempt.span = None
        span.set_attributes({**attributes, **answer})
        if status >= 500 or (error is not None and status >= 500):
            span.set_status(self._error)
        if error is not None:
            span.set_attribute("error.type", getattr(error, "error_type", type(error).__name__))
        span.end()

    def shutdown(self) -> None:
        """Export what is buffered, then stop the exporter thread (lifespan shutdown)."""
        self.provider.shutdown()
