"""The MLflow 2.8.1 gateway used for the optional side-by-side run (``python -m bench.run --mlflow``).

It lives in its own venv (``.cache/mlflow-2.8.1-venv``, git-ignored) so its pins never touch ours.
``pip install "mlflow[gateway]==2.8.1"`` is all it needs: checked on Python 3.11 with the current
pydantic 2, FastAPI and aiohttp that pip resolves; no ``pydantic<2`` pin is required.

``python -m bench.mlflow_env`` creates (or checks) the venv on its own.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REQUIREMENT = "mlflow[gateway]==2.8.1"


def _works(venv: Path) -> bool:
    exe = venv / "bin" / "mlflow"
    if not exe.exists():
        return False
    try:
        out = subprocess.run(
            [str(exe), "--version"], capture_output=True, text=True, timeout=120, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and "2.8.1" in out.stdout


def ensure_mlflow(venv: Path, python: str = sys.executable) -> str | None:
    """Create the venv if needed. Returns None when ``venv/bin/mlflow`` works, else the reason it does not."""
    if _works(venv):
        return None
    print(f"creating {venv} with {REQUIREMENT} (once; takes a few minutes)", file=sys.stderr, flush=True)
    steps = [
        [python, "-m", "venv", str(venv)],
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", REQUIREMENT],
    ]
    for cmd in steps:
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"{' '.join(cmd[:4])}: {exc}"
        if out.returncode != 0:
            return f"{' '.join(cmd[:4])} failed: {(out.stderr or out.stdout).strip()[-300:]}"
    return None if _works(venv) else f"{venv}/bin/mlflow --version does not report 2.8.1"


if __name__ == "__main__":
    root = Path(__file__).resolve().parent.parent
    problem = ensure_mlflow(root / ".cache" / "mlflow-2.8.1-venv")
    print(problem or "ok")
    sys.exit(1 if problem else 0)
