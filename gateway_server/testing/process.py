"""Run the real gateway as a subprocess on 127.0.0.1, for end-to-end and compatibility tests::

    with GatewayProcess(config_path, log_dir=tmp_path) as gateway:
        httpx.get(f"{gateway.url}/health")
    assert "sk-secret" not in gateway.output

The command is ``python -m gatewayctl serve CONFIG --host 127.0.0.1 --port PORT`` once the CLI
exists (``gatewayctl.cli.app`` importable), else the library entry point
``gateway_server.runner.run`` that the CLI wraps. ``launcher`` says which one ran.

The child's stdout and stderr go to two files (``stdout`` / ``stderr`` / ``output`` read them), so a
chatty server can never block on a full pipe. ``start()`` polls ``/health`` until it answers 200,
the process dies, or the deadline passes; ``stop()`` sends SIGTERM and waits with a deadline, then
SIGKILL. The environment is the caller's without provider keys or gateway settings (``*_API_KEY``,
``GATEWAYCTL_*``, ``MLFLOW_GATEWAY_*``), plus ``env``. Nothing sleeps for a fixed time.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Self

import httpx

from gateway_server.testing.server import free_port

__all__ = ["GatewayProcess", "GatewayStartError", "cli_available", "gateway_command"]

_POLL_INTERVAL = 0.05
_ISOLATED_PREFIXES = ("GATEWAYCTL_", "MLFLOW_GATEWAY_")
_ISOLATED_SUFFIXES = ("_API_KEY",)
_RUNNER = "import sys; from gateway_server.runner import run; run(sys.argv[1], host=sys.argv[2], port=int(sys.argv[3]))"


class GatewayStartError(RuntimeError):
    """The gateway did not become healthy; the message carries the tail of its output."""


def cli_available() -> bool:
    """True once the ``gatewayctl`` CLI module exists (a broken CLI then fails loudly, not silently)."""
    try:
        return importlib.util.find_spec("gatewayctl.cli.app") is not None
    except ImportError:
        return False


def gateway_command(
    config: str | os.PathLike[str], host: str, port: int, *, python: str = sys.executable
) -> tuple[str, list[str]]:
    """``(launcher, argv)``: ``("cli", python -m gatewayctl serve ...)`` or ``("runner", python -c ...)``."""
    if cli_available():
        return "cli", [python, "-m", "gatewayctl", "serve", str(config), "--host", host, "--port", str(port)]
    return "runner", [python, "-c", _RUNNER, str(config), host, str(port)]


def _child_env(extra: dict[str, str] | None) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(_ISOLATED_PREFIXES) and not name.endswith(_ISOLATED_SUFFIXES)
    }
    env["PYTHONUNBUFFERED"] = "1"
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env.update(extra or {})
    return env


class GatewayProcess:
    """One gateway server process. See the module docstring."""

    def __init__(
        self,
        config: str | os.PathLike[str],
        *,
        log_dir: str | os.PathLike[str],
        host: str = "127.0.0.1",
        env: dict[str, str] | None = None,
        startup_timeout: float = 30.0,
        name: str = "gateway",
        args: Sequence[str] = (),
    ) -> None:
        self.config = Path(config)
        self.args = list(args)  # more `serve` options, e.g. ["--workers", "2"]
        self.host = host
        self.port = 0
        self.env = _child_env(env)
        self.startup_timeout = startup_timeout
        self.log_dir = Path(log_dir)
        self.name = name
        self.launcher = ""
        self.command: list[str] = []
        self.startup_seconds: float | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self._attempt = 0

    # -- output -----------------------------------------------------------------------------------

    @property
    def stdout_path(self) -> Path:
        return self.log_dir / f"{self.name}-{self._attempt}.stdout.log"

    @property
    def stderr_path(self) -> Path:
        return self.log_dir / f"{self.name}-{self._attempt}.stderr.log"

    @property
    def stdout(self) -> str:
        return _read(self.stdout_path)

    @property
    def stderr(self) -> str:
        return _read(self.stderr_path)

    @property
    def output(self) -> str:
        """Everything the process printed so far, stdout then stderr."""
        return self.stdout + self.stderr

    # -- state ------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self, attempts: int = 3) -> Self:
        """Start and wait until ``/health`` answers 200; retry on another port if the port was taken."""
        if self.process is not None:
            raise RuntimeError("GatewayProcess.start() called twice")
        for attempt in range(1, attempts + 1):
            self._attempt = attempt
            try:
                return self._start_once()
            except GatewayStartError:
                if attempt == attempts or "already in use" not in self.output.lower():  # runner or uvicorn
                    raise
                self.process = None
        raise AssertionError("unreachable")

    def _start_once(self) -> Self:
        self.port = free_port(self.host)
        self.launcher, self.command = gateway_command(self.config, self.host, self.port)
        if self.args:
            if self.launcher != "cli":
                raise RuntimeError(f"serve options {self.args} need the gatewayctl CLI")
            self.command += self.args
        self.log_dir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.process = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=self.env,
                start_new_session=True,  # a Ctrl-C in the test runner is not sent to the server too
            )
        try:
            self._wait_healthy(started + self.startup_timeout)
        except BaseException:
            self.stop(timeout=5)
            raise
        self.startup_seconds = time.monotonic() - started
        return self

    def _wait_healthy(self, deadline: float) -> None:
        with httpx.Client(trust_env=False, timeout=2.0) as client:
            while True:
                if not self.alive:
                    raise GatewayStartError(
                        f"{self.launcher} gateway exited with code {self.returncode} before it was healthy; "
                        f"command: {self.command}\n{self._tail()}"
                    )
                try:
                    if client.get(f"{self.url}/health").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() >= deadline:
                    raise GatewayStartError(
                        f"{self.launcher} gateway on {self.url} was not healthy within {self.startup_timeout:g}s; "
                        f"command: {self.command}\n{self._tail()}"
                    )
                time.sleep(_POLL_INTERVAL)

    def terminate(self, timeout: float = 10.0) -> tuple[int | None, float]:
        """Send SIGTERM and wait up to ``timeout`` s; return (exit code or None if still running, seconds)."""
        assert self.process is not None, "not started"
        started = time.monotonic()
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout)
        return self.process.poll(), time.monotonic() - started

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, wait up to ``timeout`` s, then SIGKILL; return the exit code."""
        if self.process is None:
            return None
        code, _ = self.terminate(timeout)
        if code is None:  # the whole group: a multi-worker server's children too
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
            code = self.process.wait(timeout)
        return code

    def _tail(self, lines: int = 40) -> str:
        text = self.output.rstrip()
        return "\n".join(text.splitlines()[-lines:]) or "(no output)"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""
