"""Run an ASGI app under uvicorn in a background thread, on 127.0.0.1 and a free port.

Used by the tests (fake upstreams, an in-thread gateway for the CLI tests) and by ``bench/``::

    with serve_in_thread(app) as server:
        httpx.get(f"{server.url}/health")

The listening socket is bound *before* the thread starts (port 0 lets the kernel pick), so the port
is known at once and never raced for. ``start()`` returns only once the server accepts connections,
or raises after ``startup_timeout`` seconds; ``stop()`` asks uvicorn to exit and joins the thread
with a deadline. Nothing here sleeps for a fixed time: every wait is a poll with a deadline.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Self

import uvicorn

__all__ = ["ServerThread", "free_port", "serve_in_thread", "wait_for_port", "wait_until"]

_POLL_INTERVAL = 0.01

# What every in-thread server gets unless the caller overrides it: no signal handling (uvicorn skips
# it off the main thread), no logging config of its own, no websockets (the `websockets` package
# warns on import), and a bounded graceful shutdown so a stuck request cannot hang a test run.
_UVICORN_DEFAULTS: dict[str, Any] = {
    "loop": "asyncio",
    "http": "auto",
    "ws": "none",
    "lifespan": "auto",
    "log_config": None,
    "log_level": None,
    "access_log": False,
    "timeout_graceful_shutdown": 3,
}


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (for subprocess servers; in-process, prefer port 0)."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_until(
    predicate: Callable[[], object], timeout: float = 5.0, *, message: str = "condition not met"
) -> None:
    """Poll ``predicate`` until it is truthy; raise ``TimeoutError(message)`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{message} within {timeout:g}s")
        time.sleep(_POLL_INTERVAL)


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> None:
    """Return once ``host:port`` accepts a TCP connection; raise ``TimeoutError`` otherwise."""

    def accepts() -> bool:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            return False

    wait_until(accepts, timeout, message=f"nothing accepted connections on {host}:{port}")


class ServerThread:
    """One uvicorn server for ``app``, running in a daemon thread.

    ``uvicorn_options`` go to :class:`uvicorn.Config` (e.g. ``loop="uvloop", http="httptools"`` to
    match production, ``lifespan="on"``); the defaults suit tests.
    """

    def __init__(
        self,
        app: Any,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        startup_timeout: float = 10.0,
        shutdown_timeout: float = 10.0,
        **uvicorn_options: Any,
    ) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.startup_timeout = startup_timeout
        self.shutdown_timeout = shutdown_timeout
        options = {**_UVICORN_DEFAULTS, **uvicorn_options}
        self._server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, **options))
        self._socket: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        """``http://host:port`` with no trailing slash."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> Self:
        if self._thread is not None:
            raise RuntimeError("ServerThread.start() called twice")
        sock = socket.socket(_family(self.host), socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        self._socket = sock
        self.port = sock.getsockname()[1]
        self._thread = threading.Thread(target=self._run, name=f"uvicorn-{self.port}", daemon=True)
        self._thread.start()
        try:
            wait_until(
                lambda: self._server.started or not self.running,
                self.startup_timeout,
                message=f"server on {self.url} did not start",
            )
            if not self._server.started:
                raise RuntimeError(f"server on {self.url} failed to start") from self._error
            wait_for_port(self.host, self.port, self.startup_timeout)
        except BaseException:
            self.stop(raise_errors=False)
            raise
        return self

    def stop(self, *, raise_errors: bool = True) -> None:
        """Ask uvicorn to exit, join the thread (forcing exit past the deadline), close the socket."""
        thread = self._thread
        if thread is not None:
            self._server.should_exit = True
            thread.join(self.shutdown_timeout)
            if thread.is_alive():
                self._server.force_exit = True
                thread.join(self.shutdown_timeout)
        if self._socket is not None:
            self._socket.close()  # uvicorn closes it too; closing twice is harmless
        if not raise_errors:
            return
        if thread is not None and thread.is_alive():
            raise RuntimeError(f"server on {self.url} did not stop within {2 * self.shutdown_timeout:g}s")
        if self._error is not None and not _is_clean_exit(self._error):
            raise RuntimeError(f"server on {self.url} crashed") from self._error

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self) -> None:
        assert self._socket is not None  # bound by start() before the thread runs
        try:
            self._server.run(sockets=[self._socket])
        except BaseException as exc:  # handed to the test thread by stop()
            self._error = exc


@contextmanager
def serve_in_thread(
    app: Any, host: str = "127.0.0.1", port: int = 0, **options: Any
) -> Iterator[ServerThread]:
    """Serve ``app`` for the duration of the ``with`` block; yields the running :class:`ServerThread`."""
    with ServerThread(app, host, port, **options) as server:
        yield server


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _is_clean_exit(error: BaseException) -> bool:
    return isinstance(error, SystemExit) and error.code in (None, 0)
