"""scripts/quickstart installs the project only when the venv lacks it or pyproject.toml changed,
so a second start does not spend seconds in pip. Run in a copy of the repository's files with a
recorder in place of pip and the real gatewayctl behind a link; ``--check`` stops before serving."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_quickstart_installs_only_when_pyproject_changes(tmp_path: Path) -> None:
    (tmp_path / "scripts").mkdir()
    shutil.copy(REPO / "scripts" / "quickstart", tmp_path / "scripts" / "quickstart")
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "sample-configs").mkdir()
    shutil.copy(REPO / "sample-configs" / "quickstart.yaml", tmp_path / "sample-configs" / "quickstart.yaml")
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    for name in ("python", "gatewayctl"):
        (bin_dir / name).symlink_to(REPO / ".venv" / "bin" / name)
    calls = tmp_path / "pip-calls"
    recorder = tmp_path / "pip"
    recorder.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n', encoding="utf-8")
    recorder.chmod(0o755)
    env = {**os.environ, "QUICKSTART_PIP": str(recorder)}

    def start() -> int:
        result = subprocess.run(
            ["bash", str(tmp_path / "scripts" / "quickstart"), "--check"],
            capture_output=True, text=True, timeout=60, env=env, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert "not serving (--check)" in result.stderr
        return len(calls.read_text(encoding="utf-8").splitlines()) if calls.exists() else 0

    assert start() == 1  # a venv never stamped: install
    assert start() == 1  # nothing changed: no pip at all
    with (tmp_path / "pyproject.toml").open("a", encoding="utf-8") as file:
        file.write("\n# a new dependency would change this file\n")
    assert start() == 2  # pyproject.toml changed: install again
    assert start() == 2
