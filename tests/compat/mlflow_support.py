"""The real MLflow 2.8.1 client, in a virtual environment of its own, driven by small scripts.

**The venv** (``<repo>/.cache/mlflow-2.8.1-venv``, git-ignored) is built once with ``python -m venv``
and pip, and reused whenever it works: ``import mlflow`` reports 2.8.1 and the ``mlflow.gateway``
client imports. ``bench/`` runs MLflow's own gateway server from the same directory, so the build
installs what both need:

- ``mlflow-skinny[gateway]==2.8.1``: the ``mlflow.gateway`` client needs only the skinny
  distribution plus pydantic (which skinny does not depend on; its ``gateway`` extra brings it,
  with the server's fastapi, uvicorn and aiohttp). No pin beyond MLflow's own is needed on
  Python 3.11: 2.8.1 runs on pydantic 2 through its compatibility layer (it warns about
  ``schema_extra`` on stderr, nothing more); the full ``mlflow`` distribution (numpy, pandas,
  scipy, pyarrow, scikit-learn...) would only add minutes and ~700 MB;
- ``gunicorn<22``: ``mlflow gateway start`` runs gunicorn, a dependency of full ``mlflow`` only
  (and ``<22`` is what 2.8.1 asks for there).

A venv built by ``bench/mlflow_env.py`` (full ``mlflow[gateway]==2.8.1``) passes the same check
and is reused as is. A build takes the lock file next to the venv, so two test runs never build
at once. The build's pip output goes to ``<venv>.build.log``.

**The scripts** run in that venv with ``MLFLOW_GATEWAY_URI`` pointing at our server, the client's
retries off (MLflow retries 429/500/502/503 seven times with backoff: an error test would take
minutes and hide the first answer), and print one JSON result line that :func:`run_mlflow` returns.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
# COMPAT_MLFLOW_VENV moves it (e.g. to time a cold build without touching the shared cache).
VENV = Path(os.environ.get("COMPAT_MLFLOW_VENV") or REPO / ".cache" / "mlflow-2.8.1-venv")
MLFLOW_VERSION = "2.8.1"
REQUIREMENTS = ("mlflow-skinny[gateway]==2.8.1", "gunicorn<22")
BUILD_TIMEOUT = 600.0  # seconds for the whole build; a cold build took ~30 s on the 2-core machine
SCRIPT_TIMEOUT = 120.0

_PROBE = """
import json
import mlflow
from mlflow.gateway import MlflowGatewayClient, get_route, query, search_routes, set_gateway_uri
import pydantic, requests
print(json.dumps({"mlflow": mlflow.__version__, "pydantic": pydantic.VERSION, "requests": requests.__version__}))
"""

# Words in pip's output that mean the registry could not be reached (as opposed to a broken pin).
_NETWORK_TROUBLE = re.compile(
    r"NewConnectionError|Failed to establish a new connection|Temporary failure in name resolution|"
    r"Name or service not known|Network is unreachable|Connection refused|ConnectTimeout|ReadTimeout|"
    r"timed out|ProxyError|SSLError|Max retries exceeded|\(from versions: none\)"
)


class VenvUnavailable(Exception):
    """The MLflow venv could not be built; ``network`` says whether the registry was unreachable."""

    def __init__(self, message: str, *, network: bool) -> None:
        super().__init__(message)
        self.network = network


@dataclass
class VenvInfo:
    python: Path
    versions: dict[str, str]
    built: bool  # False: an existing venv was reused
    seconds: float  # time spent in ensure_mlflow_venv (the build, when built)
    notes: list[str] = field(default_factory=list)


def venv_python(venv: Path = VENV) -> Path:
    return venv / "bin" / "python"


def probe(venv: Path = VENV) -> dict[str, str] | None:
    """The versions the venv reports, or None when it does not work (missing, broken, not 2.8.1)."""
    python = venv_python(venv)
    if not python.exists():
        return None
    try:
        out = subprocess.run(
            [str(python), "-c", _PROBE],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    try:
        versions = json.loads(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None
    return versions if versions.get("mlflow") == MLFLOW_VERSION else None


@contextlib.contextmanager
def _locked(path: Path, timeout: float) -> Iterator[None]:
    """An exclusive lock on ``path``, waited for with a deadline (another run may be building)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout
    with open(path, "a+") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise VenvUnavailable(
                        f"another process held {path} for {timeout:g}s (a build still running?)",
                        network=False,
                    ) from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run_logged(cmd: list[str], log: Path, deadline: float) -> None:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise VenvUnavailable(f"no time left for {' '.join(cmd[:4])}", network=False)
    with open(log, "a", encoding="utf-8") as handle:
        handle.write(f"$ {' '.join(cmd)}\n")
        handle.flush()
        try:
            result = subprocess.run(
                cmd,
                stdout=handle,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                timeout=remaining,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise VenvUnavailable(
                f"`{' '.join(cmd[:6])} ...` did not finish within the {BUILD_TIMEOUT:g}s build budget; see {log}",
                network=True,
            ) from None
    if result.returncode != 0:
        text = log.read_text(encoding="utf-8", errors="replace")
        tail = "\n".join(line for line in text.splitlines() if "is ignored" not in line)[-1500:]
        raise VenvUnavailable(
            f"`{' '.join(cmd[:6])} ...` exited with {result.returncode}; see {log}:\n{tail}",
            network=bool(_NETWORK_TROUBLE.search(text)),
        )


def ensure_mlflow_venv(venv: Path = VENV, timeout: float = BUILD_TIMEOUT) -> VenvInfo:
    """Reuse the venv when it works; otherwise (re)build it. Raises :class:`VenvUnavailable`."""
    started = time.monotonic()
    deadline = started + timeout
    with _locked(venv.with_name(venv.name + ".lock"), timeout):
        versions = probe(venv)
        if versions is not None:
            return VenvInfo(venv_python(venv), versions, built=False, seconds=time.monotonic() - started)
        log = venv.with_name(venv.name + ".build.log")
        log.write_text("", encoding="utf-8")
        if venv.exists():
            shutil.rmtree(venv)
        _run_logged([sys.executable, "-m", "venv", str(venv)], log, deadline)
        pip = [str(venv_python(venv)), "-m", "pip", "install", "--disable-pip-version-check", "--no-input"]
        _run_logged([*pip, "--timeout", "30", "--retries", "2", *REQUIREMENTS], log, deadline)
        versions = probe(venv)
        if versions is None:
            raise VenvUnavailable(
                f"{venv} was built but `import mlflow.gateway` does not work or is not {MLFLOW_VERSION}; see {log}",
                network=False,
            )
        return VenvInfo(venv_python(venv), versions, built=True, seconds=time.monotonic() - started)


# ---------------------------------------------------------------- scripts in the venv

RESULT_MARK = "@@RESULT@@ "

PREAMBLE = '''
import json
import sys

import mlflow
from mlflow.gateway import MlflowGatewayClient, get_route, query, search_routes, set_gateway_uri


def emit(value):
    print("@@RESULT@@ " + json.dumps(value, default=str), flush=True)


def describe(exc):
    """An exception as data: its class (and bases), message, and the HTTP answer it carries."""
    kind = type(exc)
    info = {
        "type": f"{kind.__module__}.{kind.__qualname__}",
        "bases": [f"{k.__module__}.{k.__qualname__}" for k in kind.__mro__],
        "message": str(exc),
    }
    response = getattr(exc, "response", None)
    if response is not None:
        info["status"] = response.status_code
        info["body"] = response.text
    return info


def attempt(fn, *args, **kwargs):
    try:
        return {"ok": True, "value": fn(*args, **kwargs)}
    except Exception as exc:  # reported to the test, which decides
        return {"ok": False, "error": describe(exc)}


def route_data(route):
    """A Route as plain data (pydantic 1 or 2), plus the class name the client used."""
    data = route.model_dump() if hasattr(route, "model_dump") else route.dict()
    data["__class__"] = f"{type(route).__module__}.{type(route).__qualname__}"
    return data

'''


def mlflow_env(gateway_url: str | None) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("MLFLOW_")}
    env.update(
        {
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
            "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "0",
            "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
            "PYTHONWARNINGS": "ignore",
        }
    )
    if gateway_url is not None:
        env["MLFLOW_GATEWAY_URI"] = gateway_url
    return env


def run_mlflow(python: Path, script: str, gateway_url: str | None) -> Any:
    """Run ``PREAMBLE + script`` in the MLflow venv; return what the script passed to ``emit``."""
    code = PREAMBLE + textwrap.dedent(script)
    try:
        out = subprocess.run(
            [str(python), "-c", code],
            capture_output=True,
            text=True,
            timeout=SCRIPT_TIMEOUT,
            check=False,
            env=mlflow_env(gateway_url),
            cwd=str(python.parent),  # never import anything from the repository by accident
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"the MLflow script ran longer than {SCRIPT_TIMEOUT:g}s:\n{code}") from exc
    results = [line[len(RESULT_MARK) :] for line in out.stdout.splitlines() if line.startswith(RESULT_MARK)]
    if out.returncode != 0 or len(results) != 1:
        raise AssertionError(
            f"the MLflow script failed (exit {out.returncode}, {len(results)} results)\n"
            f"--- script\n{textwrap.dedent(script)}\n--- stdout\n{out.stdout[-3000:]}\n--- stderr\n{out.stderr[-3000:]}"
        )
    return json.loads(results[0])
