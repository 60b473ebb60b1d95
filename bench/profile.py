"""Optional: where the gateway's CPU goes under load (``python -m bench.run --profile``).

Samples the gateway with py-spy (``.venv/bin/pip install py-spy``; not a project dependency) while the
load generator drives the primary path at c=64, *after* the measured figures, so the profiler never
perturbs them. py-spy runs ``--nonblocking`` (no pauses of the target) and pinned to the generator's
core. The collapsed stacks are kept next to the JSON result; the report gets the top functions by
self time and the share of self time per package (uvicorn, aiohttp, gateway_server, asyncio, ...).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from bench._proc import pin_command, terminate

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def py_spy() -> str | None:
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


def _package(path: str) -> str:
    """The top-level package of a frame's file (py-spy prints paths relative to sys.path)."""
    parts = Path(path).parts
    if "site-packages" in parts:
        parts = parts[parts.index("site-packages") + 1 :]
    if not parts or path.startswith("<"):
        return path or "?"
    return parts[0].removesuffix(".py")


def summarise(collapsed: str, top: int = 15) -> dict:
    """Top functions by self time and self time per package, from py-spy's raw (collapsed) output."""
    by_func: Counter[str] = Counter()
    by_pkg: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        leaf = stack.rsplit(";", 1)[-1]
        m = _FRAME.match(leaf)
        func, file = (m["func"], m["file"]) if m else (leaf, "?")
        if leaf.startswith("process ") and ";" not in stack:  # --subprocesses root frame only
            func, file = "(no Python frame: native or idle)", "native"
        by_func[f"{func} ({file})"] += n
        by_pkg[_package(file)] += n
    if not total:
        return {"samples": 0}
    return {
        "samples": total,
        "self_by_package_pct": {k: round(100 * v / total, 1) for k, v in by_pkg.most_common()},
        "top_self_pct": {k: round(100 * v / total, 1) for k, v in by_func.most_common(top)},
    }


def profile(pid: int, seconds: float, out: Path, cpu: int | None, drive: Callable[[float], object]) -> dict:
    """Record ``pid`` for ``seconds`` while ``drive(seconds)`` produces load; return the summary."""
    exe = py_spy()
    if exe is None:
        return {"profile": "not available: py-spy is not installed (.venv/bin/pip install py-spy)"}
    cmd = [exe, "record", "-p", str(pid), "-d", str(max(1, round(seconds))), "-r", "250", "-f", "raw"]
    cmd += ["-o", str(out), "--nonblocking", "--subprocesses"]
    proc = subprocess.Popen(pin_command(cmd, cpu), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        time.sleep(0.5)  # let py-spy attach
        drive(seconds)
        _, err = proc.communicate(timeout=seconds + 30)
    except subprocess.TimeoutExpired:
        return {"profile": "not available: py-spy did not finish"}
    finally:
        terminate(proc, grace=5)
    if proc.returncode != 0 or not out.exists():
        return {"profile": f"not available: py-spy failed: {err.decode(errors='replace').strip()[-200:]}"}
    return summarise(out.read_text()) | {"collapsed_stacks": str(out)}
