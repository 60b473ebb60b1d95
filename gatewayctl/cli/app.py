"""The root ``gatewayctl`` command: global options, the commands, and the one error-to-exit-code point."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from typer.core import TyperGroup
from typer.exceptions import TyperException

from gatewayctl._version import __version__
from gatewayctl.cli import governance, output, query, routes, serve, validate
from gatewayctl.cli.exit_codes import exit_code_for, help_epilog

__all__ = ["app", "main"]


class _Root(TyperGroup):
    """Turns every error a command raises into a message on stderr and its documented exit code.

    Click's own exits (usage errors, ``--help``, ``typer.Exit``, aborts) pass through untouched.
    A traceback is shown only with ``--debug``, never with local variables.
    """

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (TyperException, typer.Exit, typer.Abort, BrokenPipeError):
            raise
        except Exception as exc:  # the process edge: every failure ends here, reported once
            output.report_error(exc, debug=bool(ctx.params.get("debug")))
            raise typer.Exit(exit_code_for(exc)) from exc


app = typer.Typer(
    name="gatewayctl",
    cls=_Root,
    help="Run, check and query an LLM gateway (MLflow AI Gateway compatible).",
    epilog=help_epilog(),
    no_args_is_help=True,
    add_completion=False,  # static scripts live in completions/ (python -m gatewayctl.cli.completions)
    pretty_exceptions_show_locals=False,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"gatewayctl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Show the version and exit."),
    ] = False,
    debug: Annotated[
        bool,
        typer.Option("--debug", envvar="GATEWAYCTL_DEBUG", help="Show the traceback when a command fails."),
    ] = False,
) -> None:
    """Run, check and query an LLM gateway (MLflow AI Gateway compatible)."""


app.command()(validate.validate)
app.command()(serve.serve)
app.add_typer(routes.app)
app.command()(query.query)
app.command()(governance.usage)
app.command()(governance.keys)


def main() -> None:
    """Console-script entry point (``gatewayctl``)."""
    app(prog_name="gatewayctl")
