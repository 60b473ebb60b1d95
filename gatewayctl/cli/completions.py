"""``python -m gatewayctl.cli.completions [DIR]`` (re)writes ``DIR/gatewayctl.{bash,zsh,fish}``
(default ``completions/``) from the Typer app; ``--check`` only reports stale files and exits 1.

The rendering is ``completion_scripts.py``; ``gatewayctl completion SHELL`` prints the same text.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import typer.main

from gatewayctl.cli.completion_scripts import PROG, SHELLS, _Command, render_tree, tree_of

__all__ = ["SHELLS", "command_tree", "main", "render"]


def command_tree() -> _Command:
    from gatewayctl.cli.app import app

    return tree_of(typer.main.get_command(app))


def render(shell: str, root: _Command | None = None) -> str:
    """The completion script for ``shell`` (bash, zsh or fish)."""
    return render_tree(shell, root or command_tree())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gatewayctl.cli.completions", description=__doc__)
    parser.add_argument("directory", nargs="?", default="completions", type=Path)
    parser.add_argument("--check", action="store_true", help="report stale scripts and exit 1; write nothing")
    args = parser.parse_args(argv)
    root = command_tree()
    stale = []
    for shell in SHELLS:
        path = args.directory / f"{PROG}.{shell}"
        text = render(shell, root)
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        stale.append(path)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    for path in stale:
        print(f"{'stale' if args.check else 'wrote'}: {path}", file=sys.stderr)
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
