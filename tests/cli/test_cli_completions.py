"""completions/ holds scripts generated from the Typer app; they must match the app, and they must work."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from gatewayctl.cli import completions

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "completions"


@pytest.mark.parametrize("shell", completions.SHELLS)
def test_committed_scripts_are_current(shell: str) -> None:
    committed = (SCRIPTS / f"gatewayctl.{shell}").read_text(encoding="utf-8")
    assert committed == completions.render(shell), (
        f"completions/gatewayctl.{shell} is stale: run `python -m gatewayctl.cli.completions`"
    )


def test_generator_check_mode_reports_stale_files_and_writes_nothing(tmp_path: Path) -> None:
    assert completions.main([str(tmp_path), "--check"]) == 1
    assert list(tmp_path.iterdir()) == []
    assert completions.main([str(tmp_path)]) == 0
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "gatewayctl.bash",
        "gatewayctl.fish",
        "gatewayctl.zsh",
    ]
    assert completions.main([str(tmp_path), "--check"]) == 0


def test_scripts_name_every_command_and_choice() -> None:
    for shell in completions.SHELLS:
        text = completions.render(shell)
        for word in ("validate", "serve", "query", "routes", "gateway-uri", "llm/v1/embeddings", "json"):
            assert word in text, (shell, word)


BASH_CASES = [
    (["gatewayctl", ""], ["validate", "serve", "query", "usage", "keys", "completion", "top", "routes"]),
    (["gatewayctl", "usage", "--by", ""], ["key", "route", "model"]),
    (["gatewayctl", "ro"], ["routes"]),
    (["gatewayctl", "--debug", "routes", "cr"], ["create"]),
    (
        ["gatewayctl", "routes", "create", "x", "--route-type", "llm/v1/c"],
        ["llm/v1/chat", "llm/v1/completions"],
    ),
    (["gatewayctl", "query", "chat", "-o", ""], ["text", "json"]),
    (["gatewayctl", "routes", "delete", "x", "--y"], ["--yes"]),
    (["gatewayctl", "serve", "--port", ""], []),
]


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
@pytest.mark.parametrize(("words", "expected"), BASH_CASES)
def test_bash_completion_offers_the_right_words(words: list[str], expected: list[str]) -> None:
    quoted = " ".join(f"'{word}'" for word in words)
    script = (
        f"source {SCRIPTS / 'gatewayctl.bash'}\n"
        f"COMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}; COMPREPLY=()\n"
        "_gatewayctl\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    result = subprocess.run(
        ["bash", "--norc", "-c", script], capture_output=True, text=True, timeout=30, check=True
    )
    assert [line for line in result.stdout.splitlines() if line] == expected


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_other_shells_parse_the_script(shell: str) -> None:
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed")
    flag = ["-n"] if shell == "zsh" else ["--no-execute"]
    result = subprocess.run(
        [shell, *flag, str(SCRIPTS / f"gatewayctl.{shell}")], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr


FISH_CASES = [
    ("gatewayctl routes ", ["create", "delete", "get", "list"]),
    ("gatewayctl routes create x --route-type ", ["llm/v1/chat", "llm/v1/completions", "llm/v1/embeddings"]),
    ("gatewayctl query chat --ou", ["--output"]),
]


@pytest.mark.skipif(shutil.which("fish") is None, reason="fish is not installed")
@pytest.mark.parametrize(("line", "expected"), FISH_CASES)
def test_fish_completion_offers_the_right_words(line: str, expected: list[str]) -> None:
    script = f"source {SCRIPTS / 'gatewayctl.fish'}; complete -C '{line}'"
    result = subprocess.run(["fish", "--no-config", "-c", script], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert [row.split("\t")[0] for row in result.stdout.splitlines()] == expected
