"""A throw-away ``redis-server`` on 127.0.0.1, for tests of ``server.shared_state``::

    with RedisServer(work_dir=tmp_path) as redis:
        config = {..., "server": {"shared_state": redis.url}}

It listens on a free port, keeps nothing on disk (``--save '' --appendonly no``), and is stopped
(SIGTERM, then SIGKILL) on exit. ``start()`` polls with PING until it answers or a deadline passes.
``password`` turns on ``requirepass`` (then ``url`` carries it, as an operator's URL would).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from pathlib import Path
from typing import Self

from gateway_server.testing.server import free_port

__all__ = ["RedisServer", "redis_server_binary"]

_POLL_INTERVAL = 0.02


def redis_server_binary() -> str | None:
    """The path of ``redis-server``, or None when it is not installed."""
    return shutil.which("redis-server")


class RedisServer:
    def __init__(self, *, work_dir: str | Path, password: str | None = None, startup_timeout: float = 10.0):
        self.work_dir = Path(work_dir)
        self.password = password
        self.startup_timeout = startup_timeout
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    @property
    def log_path(self) -> Path:
        return self.work_dir / f"redis-{self.port}.log"

    def start(self) -> Self:
        binary = redis_server_binary()
        if binary is None:
            raise RuntimeError("redis-server is not installed (scripts/test installs it with apt-get)")
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        command = [
            binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        command += ["--dir", str(self.work_dir), "--logfile", str(self.log_path)]
        if self.password:
            command += ["--requirepass", self.password]
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, start_new_session=True)
        self._wait_ready(time.monotonic() + self.startup_timeout)
        return self

    def _wait_ready(self, deadline: float) -> None:
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.port, password=self.password, socket_timeout=1)
        try:
            while True:
                assert self.process is not None
                if self.process.poll() is not None:
                    raise RuntimeError(f"redis-server exited with {self.process.returncode}: {self._tail()}")
                with contextlib.suppress(redis.ConnectionError):
                    if client.ping():
                        return
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"redis-server did not answer within {self.startup_timeout:g}s")
                time.sleep(_POLL_INTERVAL)
        finally:
            client.close()

    def flush(self) -> None:
        """Forget every key (between tests)."""
        import redis

        with redis.Redis(host="127.0.0.1", port=self.port, password=self.password) as client:
            client.flushall()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)

    def _tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except FileNotFoundError:
            return "(no log)"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
