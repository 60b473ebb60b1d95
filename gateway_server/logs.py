"""The server's log lines: ``serve --log-level LEVEL --log-format text|json``.

Every line starts with (text) or carries (json) an ISO-8601 UTC timestamp with milliseconds, the
level and the process id (under ``--workers N``, which worker wrote it):

    2026-12-02T05:50:01.123Z INFO 4242 gateway_server.reload: config gateway.yaml reloaded: ...
    {"ts":"2026-12-02T05:50:01.123Z","level":"INFO","pid":4242,"logger":"gateway_server.reload","message":"..."}

One **access line** per invocation (logger ``gateway_server.access``, level INFO) with the fields
of :data:`ACCESS_FIELDS` (docs/observability.md describes each). It is written by
:class:`AccessLog`, not through :mod:`logging`: the fields go straight to one ``orjson.dumps`` (or
one join) and the lines of one event-loop turn to one ``write``, so a line costs a few
microseconds on the hot path (docs/performance.md). Bodies are never logged; the key field is the
gateway key's *name*; upstream error reasons are redacted where they are made.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from typing import IO, TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from gateway_server.observability import Record

__all__ = [
    "ACCESS_FIELDS",
    "LOG_FORMATS",
    "LOG_FORMAT_ENV",
    "LOG_LEVELS",
    "LOG_LEVEL_ENV",
    "AccessLog",
    "JsonFormatter",
    "TextFormatter",
    "timestamp",
]

LOG_LEVEL_ENV = "GATEWAYCTL_LOG_LEVEL"  # the runner passes its options to the workers this way
LOG_FORMAT_ENV = "GATEWAYCTL_LOG_FORMAT"
ACCESS_LOG_ENV = "GATEWAYCTL_ACCESS_LOG"
LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
ACCESS_FIELDS = (
    "request_id",
    "route",
    "family",
    "status",
    "total_ms",
    "overhead_ms",
    "prompt_tokens",
    "completion_tokens",
    "key",
    "provider",
    "model",
    "attempts",
    "fallback",
    "stream",
    "error",
)
ACCESS_LOGGER = "gateway_server.access"

_second: int = -1
_second_text = ""


def timestamp(now: float | None = None) -> str:
    """``2026-12-02T05:50:01.123Z`` (the seconds part is formatted once per second)."""
    global _second, _second_text
    now = time.time() if now is None else now
    second = int(now)
    if second != _second:
        _second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _second = second
    return f"{_second_text}.{int((now - second) * 1000):03d}Z"


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = f"{timestamp(record.created)} {record.levelname} {record.process} {record.name}: {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {
            "ts": timestamp(record.created),
            "level": record.levelname,
            "pid": record.process,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            fields["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(fields).decode()


def log_config(level: str = "info", fmt: str = "text") -> dict[str, Any]:
    """A :func:`logging.config.dictConfig` for uvicorn's loggers and ours, on one stderr handler."""
    formatter = JsonFormatter if fmt == "json" else TextFormatter
    handler = {"class": "logging.StreamHandler", "formatter": "gateway", "stream": "ext://sys.stderr"}
    upper = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"gateway": {"()": f"{formatter.__module__}.{formatter.__qualname__}"}},
        "handlers": {"default": handler},
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": upper, "propagate": False},
            "uvicorn.error": {"level": upper},
            "uvicorn.access": {"handlers": ["default"], "level": upper, "propagate": False},
            "gateway_server": {"handlers": ["default"], "level": upper, "propagate": False},
        },
    }


class AccessLog:
    """Writes access lines to ``stream`` (stderr), the lines of one loop turn in one write."""

    __slots__ = ("_pending", "fmt", "pid", "stream")

    def __init__(self, fmt: str = "text", stream: IO[str] | None = None) -> None:
        self.fmt = fmt
        self.stream = stream if stream is not None else sys.stderr
        self.pid = os.getpid()
        self._pending: list[str] | None = None

    @classmethod
    def from_env(cls) -> AccessLog | None:
        """The worker's access log as the runner configured it (None: off, or level above INFO)."""
        if os.environ.get(ACCESS_LOG_ENV, "1") == "0":
            return None
        if logging.getLevelName(os.environ.get(LOG_LEVEL_ENV, "info").upper()) > logging.INFO:
            return None
        return cls(os.environ.get(LOG_FORMAT_ENV, "text"))

    def write(
        self, record: Record, status: int, seconds: float, overhead: float, error: BaseException | None
    ) -> None:
        """The access line of one finished invocation (after ``record.finish``)."""
        usage = record.usage
        served = record.served
        adapter = served.adapter if served is not None else None
        if self.fmt == "json":
            fields: dict[str, Any] = {
                "ts": timestamp(),
                "level": "INFO",
                "pid": self.pid,
                "logger": ACCESS_LOGGER,
                "request_id": record.request_id,
                "route": record.route or None,
                "family": record.family,
                "status": status,
                "total_ms": round(seconds * 1000, 3),
                "overhead_ms": round(overhead * 1000, 3),
                "prompt_tokens": usage.prompt if usage is not None else None,
                "completion_tokens": usage.completion if usage is not None else None,
                "key": record.key or None,
                "provider": adapter.name if adapter is not None else None,
                "model": adapter.model_name if adapter is not None else None,
                "attempts": len(record.attempts),
                "fallback": record.fallback,
                "stream": record.stream,
            }
            if error is not None:
                fields["error"] = getattr(error, "error_type", "internal_error")
            line = orjson.dumps(fields).decode()
        else:
            line = (
                f"{timestamp()} INFO {self.pid} {ACCESS_LOGGER}: request_id={record.request_id} "
                f"route={record.route or '-'} family={record.family} status={status} "
                f"total_ms={seconds * 1000:.3f} overhead_ms={overhead * 1000:.3f} "
                f"prompt_tokens={usage.prompt if usage is not None else '-'} "
                f"completion_tokens={usage.completion if usage is not None else '-'} key={record.key or '-'} "
                f"provider={adapter.name if adapter is not None else '-'} "
                f"model={(adapter.model_name or '-') if adapter is not None else '-'} "
                f"attempts={len(record.attempts)} fallback={record.fallback or '-'} "
                f"stream={'true' if record.stream else 'false'}"
            )
            if error is not None:
                line += f" error={getattr(error, 'error_type', 'internal_error')}"
        pending = self._pending
        if pending is not None:
            pending.append(line)
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._emit([line])
            return
        self._pending = [line]
        loop.call_soon(self.flush)

    def flush(self) -> None:
        pending, self._pending = self._pending, None
        if pending:
            self._emit(pending)

    def _emit(self, lines: list[str]) -> None:
        try:
            self.stream.write("\n".join(lines) + "\n")
            self.stream.flush()
        except (OSError, ValueError):  # a closed stderr must not fail requests
            pass
