"""Process helpers for the benchmark: CPU pinning, /proc readings, bounded waits, clean termination.

Linux only where /proc is read; every function degrades to ``None`` (not an exception) where the
information is not available, so the benchmark still runs and says what it could not measure.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import selectors
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def require_loopback(host: str) -> str:
    """The benchmark only ever talks to this machine: refuse any other address."""
    if host in LOOPBACK_HOSTS or host.startswith("127."):
        return host
    raise ValueError(f"benchmark traffic must stay on loopback; refusing host {host!r}")


try:  # taken at import, before pin_self() narrows this process to one core
    _ALLOWED = sorted(os.sched_getaffinity(0))
except AttributeError:  # pragma: no cover - non-Linux
    _ALLOWED = list(range(os.cpu_count() or 1))


def cores() -> int:
    """Cores this benchmark may use (not narrowed by pin_self)."""
    return len(_ALLOWED)


def pinning_available() -> bool:
    return cores() >= 2 and hasattr(os, "sched_setaffinity")


def pin_command(cmd: Sequence[str], cpu: int | None) -> list[str]:
    """Prefix ``cmd`` with ``taskset -c CPU`` when pinning is possible; otherwise return it unchanged."""
    if cpu is None or not pinning_available() or cpu not in _ALLOWED or shutil.which("taskset") is None:
        return list(cmd)
    return ["taskset", "-c", str(cpu), *cmd]


def pin_self(cpu: int | None) -> bool:
    """Pin the calling process to one core (the load generator runs in-process). True if pinned."""
    if cpu is None or not pinning_available() or cpu not in _ALLOWED:
        return False
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError:
        return False
    return True


def unpin_self() -> None:
    if hasattr(os, "sched_setaffinity"):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, set(_ALLOWED))


def _read(path: str) -> str | None:
    try:
        with open(path) as fh:
            return fh.read()
    except OSError:
        return None


def _stat_fields(pid: int) -> list[str] | None:
    text = _read(f"/proc/{pid}/stat")
    if text is None:
        return None
    # the command name is in parentheses and may contain spaces: split after the last ')'
    return text[text.rindex(")") + 2 :].split()


def descendants(pid: int) -> list[int]:
    """Live descendants of ``pid`` (workers a server forked), found by scanning /proc."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry))
    found: list[int] = []
    todo = [pid]
    while todo and len(found) < 10_000:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def cpu_seconds(pid: int, tree: bool = True) -> float | None:
    """utime+stime of ``pid`` (plus reaped children's cutime+cstime, plus live descendants if ``tree``)."""
    fields = _stat_fields(pid)
    if fields is None:
        return None
    # after the ')' field 3 (state) is index 0, so utime (14) is index 11 .. cstime (17) is index 14
    ticks = sum(int(v) for v in fields[11:15])
    if tree:
        for child in descendants(pid):
            sub = _stat_fields(child)
            if sub is not None:
                ticks += sum(int(v) for v in sub[11:13])
    return ticks / CLK_TCK


def rss_mib(pid: int, tree: bool = True) -> float | None:
    """VmRSS of ``pid`` (plus its live descendants if ``tree``), in MiB."""
    total_kib = 0
    pids = [pid, *(descendants(pid) if tree else [])]
    seen = False
    for p in pids:
        text = _read(f"/proc/{p}/status")
        if text is None:
            continue
        for line in text.splitlines():
            if line.startswith("VmRSS:"):
                total_kib += int(line.split()[1])
                seen = True
                break
    return total_kib / 1024 if seen else None


def open_fds(pid: int) -> int | None:
    """Open file descriptors of ``pid`` (sockets included): a leak of connections shows up here."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def threads(pid: int) -> int | None:
    """``Threads:`` of ``pid`` from /proc/<pid>/status."""
    text = _read(f"/proc/{pid}/status")
    for line in (text or "").splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return None


def read_line(proc: subprocess.Popen, prefix: str, timeout: float) -> str | None:
    """Read ``proc``'s stdout until a line starting with ``prefix`` arrives (or ``timeout`` / exit)."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not sel.select(timeout=max(0.0, deadline - time.monotonic())):
                continue
            line = proc.stdout.readline()
            if not line:
                return None  # EOF: the process exited
            text = line.decode(errors="replace") if isinstance(line, bytes) else line
            if text.startswith(prefix):
                return text.strip()
    return None


def terminate(proc: subprocess.Popen | None, grace: float = 10.0) -> int | None:
    """SIGTERM the process and its descendants, wait up to ``grace`` seconds, then SIGKILL. Returns rc."""
    if proc is None:
        return None
    if proc.poll() is not None:
        return proc.returncode
    kids = descendants(proc.pid)
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        rc = proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        rc = proc.wait(timeout=grace)
    for kid in kids:  # workers a server forked and did not reap
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(kid, signal.SIGKILL)
    return rc


def http_get(port: int, path: str, timeout: float = 1.0, host: str = "127.0.0.1") -> tuple[int, bytes]:
    """One blocking GET (orchestration only; never on a measured path)."""
    conn = http.client.HTTPConnection(require_loopback(host), port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def http_post(
    port: int, path: str, body: bytes, headers: dict[str, str] | None = None, timeout: float = 10.0
) -> tuple[int, dict[str, str], bytes]:
    """One blocking POST (shape checks only; never on a measured path)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json", **(headers or {})})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def wait_healthy(
    proc: subprocess.Popen, port: int, timeout: float, start: float | None = None, path: str = "/health"
) -> float | None:
    """Poll ``GET path`` every 10 ms until it answers 200.

    Returns seconds since ``start`` (a ``time.perf_counter()`` taken just before the process was
    started; default: now), or None if the process exited or ``timeout`` passed first.
    """
    start = time.perf_counter() if start is None else start
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if proc.poll() is not None:
            return None
        try:
            status, _ = http_get(port, path, timeout=0.5)
        except OSError:
            status = 0
        if status == 200:
            return time.perf_counter() - start
        time.sleep(0.01)
    return None


def free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def system_cpu() -> tuple[float, float] | None:
    """(busy seconds, steal seconds) summed over all cores since boot, from /proc/stat."""
    text = _read("/proc/stat")
    if text is None or not text.startswith("cpu "):
        return None
    v = [int(x) for x in text.split("\n", 1)[0].split()[1:]]
    # user nice system idle iowait irq softirq steal ...; busy excludes idle, iowait and steal
    busy = v[0] + v[1] + v[2] + v[5] + v[6]
    steal = v[7] if len(v) > 7 else 0
    return busy / CLK_TCK, steal / CLK_TCK


def background_cpu(seconds: float = 1.0) -> dict:
    """CPU used by everything on the machine over ``seconds`` while the benchmark itself is idle."""
    a = system_cpu()
    time.sleep(seconds)
    b = system_cpu()
    if a is None or b is None:
        return {}
    return {"busy_cores": round((b[0] - a[0]) / seconds, 3), "steal_cores": round((b[1] - a[1]) / seconds, 3)}
