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
        changed_by = getattr(record, "changed_by", None)  # route changes: key:NAME, file, ...
        if changed_by is not None:
            fields["changed_by"] = changed_by
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
    """Writes access lines to ``stream`` (stderr), the lines of one loop turn in one write.

    The hot path pays for the fields that change per request only: what comes from the config
    (route, family, key name, provider, model) is formatted once per combination and kept
    (:meth:`_fixed`), request ids are of a safe alphabet (observability.py), and a real stderr is
    written as bytes to its file descriptor, past the text layer."""

    __slots__ = ("_fd", "_fixed_parts", "_format", "_pending", "fmt", "pid", "stream")

    _MAX_FIXED = 4096  # combinations kept; more (routes churned at run time) start the table again

    def __init__(self, fmt: str = "text", stream: IO[str] | None = None) -> None:
        self.fmt = fmt
        self.stream = stream if stream is not None else sys.stderr
        self.pid = os.getpid()
        self._pending: list[str] | None = None
        self._fixed_parts: dict[tuple[str, str, str, int], tuple[Any, tuple[str, str]]] = {}
        self._format = self._json if fmt == "json" else self._text
        self._fd = _fd_of(self.stream)

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
        line = self._format(record, status, seconds, overhead, error)
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

    def _fixed(self, record: Record) -> tuple[str, str]:
        """The config-derived parts of a line, made once per combination: (route, family) and
        (key, provider, model), in their places in :data:`ACCESS_FIELDS`."""
        served = record.served
        ident = (record.route, record.family, record.key, id(served))
        known = self._fixed_parts.get(ident)
        if known is not None and known[0] is served:
            return known[1]
        adapter = served.adapter if served is not None else None
        provider = adapter.name if adapter is not None else None
        model = (adapter.model_name or None) if adapter is not None else None
        if self.fmt == "json":
            where = orjson.dumps({"route": record.route or None, "family": record.family}).decode()
            who = orjson.dumps({"key": record.key or None, "provider": provider, "model": model}).decode()
            parts = (where[1:-1], who[1:-1])
        else:
            parts = (
                f"route={record.route or '-'} family={record.family}",
                f"key={record.key or '-'} provider={provider or '-'} model={model or '-'}",
            )
        if len(self._fixed_parts) >= self._MAX_FIXED:
            self._fixed_parts.clear()
        self._fixed_parts[ident] = (served, parts)
        return parts

    def _text(
        self, record: Record, status: int, seconds: float, overhead: float, error: BaseException | None
    ) -> str:
        usage = record.usage
        where, who = self._fixed(record)
        line = (
            f" INFO {self.pid} {ACCESS_LOGGER}: request_id={record.request_id} {where} status={status} "
            f"total_ms={seconds * 1000:.3f} overhead_ms={overhead * 1000:.3f} "
            + (
                f"prompt_tokens={usage.prompt} completion_tokens={usage.completion} "
                if usage is not None
                else "prompt_tokens=- completion_tokens=- "
            )
            + f"{who} attempts={record.tries} fallback={record.fallback or '-'} "
            f"stream={'true' if record.stream else 'false'}"
        )
        if error is not None:
            line += f" error={getattr(error, 'error_type', 'internal_error')}"
        return line

    def _json(
        self, record: Record, status: int, seconds: float, overhead: float, error: BaseException | None
    ) -> str:
        # Every string placed raw is JSON-safe: the request id (a safe alphabet), the fixed parts
        # (orjson made them), the logger name; the rest are numbers and literals. The "ts" field
        # that opens the object is put in front when the line is written (:meth:`_emit`).
        usage = record.usage
        fallback = record.fallback
        where, who = self._fixed(record)
        line = (
            f'","level":"INFO","pid":{self.pid},"logger":"{ACCESS_LOGGER}",'
            f'"request_id":"{record.request_id}",{where},"status":{status},'
            f'"total_ms":{seconds * 1000:.3f},"overhead_ms":{overhead * 1000:.3f},'
            + (
                f'"prompt_tokens":{usage.prompt},"completion_tokens":{usage.completion},'
                if usage is not None
                else '"prompt_tokens":null,"completion_tokens":null,'
            )
            + f'{who},"attempts":{record.tries},'
            + ('"fallback":null,' if fallback is None else f'"fallback":{orjson.dumps(fallback).decode()},')
            + ('"stream":true' if record.stream else '"stream":false')
        )
        if error is not None:
            line += f',"error":{orjson.dumps(getattr(error, "error_type", "internal_error")).decode()}'
        return line + "}"

    def flush(self) -> None:
        pending, self._pending = self._pending, None
        if pending:
            self._emit(pending)

    def _emit(self, lines: list[str]) -> None:
        # The lines of one loop turn were written within microseconds: they share one timestamp,
        # put in front of each here (a line is formatted without it).
        prefix = f'{{"ts":"{timestamp()}' if self.fmt == "json" else timestamp()
        text = prefix + ("\n" + prefix).join(lines) + "\n"
        try:
            if self._fd is not None:
                data = text.encode("utf-8", "replace")
                while data:  # a pipe may take part of it
                    data = data[os.write(self._fd, data) :]
            else:
                self.stream.write(text)
                self.stream.flush()
        except (OSError, ValueError):  # a closed stderr must not fail requests
            pass


def _fd_of(stream: IO[str]) -> int | None:
    """The file descriptor of the process's real stderr (written directly), else None."""
    if stream is not sys.__stderr__:
        return None
    try:
        stream.flush()  # what the text layer holds goes first
        return stream.fileno()
    except (OSError, ValueError, AttributeError):
        return None
