"""Help a person reads: -h everywhere, an Examples section in every command, plain labels, nothing
cut at 80 columns; and `gatewayctl completion SHELL` prints the committed script.

The checks walk the whole command tree, so a command added later is held to them too.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner, Result

from gatewayctl.cli.app import app

Cli = Callable[..., Result]
REPO = Path(__file__).resolve().parents[2]


def _commands() -> Iterator[tuple[tuple[str, ...], Any]]:
    def walk(command: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
        yield path, command
        for name, sub in getattr(command, "commands", {}).items():
            yield from walk(sub, (*path, name))

    yield from walk(typer.main.get_command(app), ())


COMMANDS = [path for path, _ in _commands()]


def _help(*path: str, flag: str = "--help") -> str:
    # 80 columns, as a terminal that was not resized; CliRunner has no tty, so click uses this width.
    result = CliRunner().invoke(
        app, [*path, flag], prog_name="gatewayctl", terminal_width=80, env={"COLUMNS": "80"}
    )
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "gatewayctl")
def test_dash_h_is_help_everywhere(path: tuple[str, ...]) -> None:
    assert _help(*path, flag="-h") == _help(*path)


@pytest.mark.parametrize("path", [p for p in COMMANDS if p], ids=" ".join)
def test_every_command_has_examples_that_run_it(path: tuple[str, ...]) -> None:
    text = _help(*path)
    assert "\nExamples:\n" in text.replace("  Examples:", "Examples:"), (
        f"gatewayctl {' '.join(path)}: no Examples"
    )
    block = text.split("Examples:", 1)[1].split("\n\n", 2)[1]
    examples = [line.strip() for line in block.splitlines() if line.strip()]
    assert examples and all("gatewayctl " + " ".join(path) in line for line in examples[:1])


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "gatewayctl")
def test_labels_are_words_and_nothing_is_cut_at_80_columns(path: tuple[str, ...]) -> None:
    text = _help(*path)
    assert not re.search(r"<[a-z][^>]*>", text), text  # Typer's <list[Path]>, <bool>, <float range>
    assert not re.search(r"\{[A-Z_]+\}", text), text  # {CONFIG}
    assert "…" not in text
    command = dict(_commands())[path]
    for param in command.params:
        if param.param_type_name != "option":
            continue
        for name in param.opts:
            assert re.search(rf"(^|[\s,]){re.escape(name)}(\s|,|$)", text, re.M), f"{name} cut or missing"
    option_lines = [line for line in text.splitlines() if line.lstrip().startswith("-")]
    assert all(len(line) <= 80 for line in option_lines), option_lines


def test_type_labels_say_what_to_type() -> None:
    serve = _help("serve")
    for label in ("--config-path FILE", "--host ADDRESS", "--port PORT", "--graceful-timeout SECONDS"):
        assert label in serve
    assert "Usage: gatewayctl serve [OPTIONS] [CONFIG]" in serve
    assert "Usage: gatewayctl validate [OPTIONS] CONFIG..." in _help("validate")
    create = _help("routes", "create")
    for label in ("--provider NAME", "--from-file FILE", "--timeout SECONDS", "-o, --output text|json"):
        assert label in create
    assert "--allow-unauthenticated-admin" in serve  # the longest option name, whole


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_prints_the_committed_script(cli: Cli, shell: str) -> None:
    result = cli("completion", shell)
    assert result.exit_code == 0
    assert result.stdout == (REPO / "completions" / f"gatewayctl.{shell}").read_text(encoding="utf-8")


def test_completion_of_an_unknown_shell_is_a_usage_error(cli: Cli) -> None:
    result = cli("completion", "powershell")
    assert result.exit_code == 2
    assert "bash" in result.stderr


def test_the_printed_bash_script_completes_once_sourced() -> None:
    script = (
        f"source <({sys.executable} -m gatewayctl completion bash)\n"
        "COMP_WORDS=(gatewayctl rou); COMP_CWORD=1; COMPREPLY=(); _gatewayctl\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    result = subprocess.run(
        ["bash", "--norc", "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.split() == ["routes"]
