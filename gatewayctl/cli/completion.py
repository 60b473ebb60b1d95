"""``gatewayctl completion bash|zsh|fish``: print the shell completion script (docs/cli.md: installing it)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

__all__ = ["Shell", "completion"]


class Shell(StrEnum):
    BASH = "bash"
    ZSH = "zsh"
    FISH = "fish"


def completion(
    ctx: typer.Context,
    shell: Annotated[Shell, typer.Argument(metavar="bash|zsh|fish", help="The shell to complete in.")],
) -> None:
    """Print the completion script for a shell; see docs/cli.md for where to put it.

    The script is static (completing never starts Python); it is the one in completions/,
    generated from these commands.

    Examples:

    \b
      gatewayctl completion bash > /etc/bash_completion.d/gatewayctl
      gatewayctl completion zsh > "${fpath[1]}/_gatewayctl"
      gatewayctl completion fish > ~/.config/fish/completions/gatewayctl.fish
      source <(gatewayctl completion bash)
    """
    from gatewayctl.cli.completion_scripts import render_tree, tree_of

    typer.echo(render_tree(shell.value, tree_of(ctx.find_root().command)), nl=False)
