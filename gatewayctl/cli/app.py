"""The root ``gatewayctl`` command: global options, the commands, and the one error-to-exit-code point."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Annotated, Any

import typer
from typer._click.exceptions import ClickException  # Typer's own click (typer>=0.29 vendors it)
from typer.exceptions import TyperException

from gatewayctl._version import __version__
from gatewayctl.cli import completion, governance, output, query, routes, serve, top, validate
from gatewayctl.cli.exit_codes import exit_code_for, help_epilog
from gatewayctl.cli.help import HELP_OPTION_NAMES, HelpGroup

__all__ = ["app", "main"]


class _Root(HelpGroup):
    """Turns every error into a message on stderr (JSON under ``-o json``) and its documented exit code.

    A traceback is shown only with ``--debug``, never with local variables. Click's usage errors
    are reported here too, so that a script asking for JSON gets JSON whatever went wrong.
    """

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (TyperException, typer.Exit, typer.Abort, ClickException, BrokenPipeError):
            raise
        except Exception as exc:  # the process edge: every failure ends here, reported once
            as_json = output.json_requested(getattr(self, "argv", sys.argv[1:]))
            output.report_error(exc, debug=bool(ctx.params.get("debug")), as_json=as_json)
            raise typer.Exit(exit_code_for(exc)) from exc

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        self.argv = argv  # a group is built per run (Typer), so this is this run's command line
        options: dict[str, Any] = {"prog_name": prog_name, "complete_var": complete_var, **extra}
        if not standalone_mode:
            return super().main(argv, standalone_mode=False, **options)
        try:
            code = super().main(argv, standalone_mode=False, **options)
        except ClickException as exc:  # usage errors: exit 2, in the format asked for
            if output.json_requested(argv):
                output.report_usage_error(exc)
            else:
                exc.show()
            sys.exit(exc.exit_code)
        except typer.Abort:
            output.say("Aborted!")
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    name="gatewayctl",
    cls=_Root,
    help="Run, check and query an LLM gateway (MLflow AI Gateway compatible).",
    epilog=help_epilog(),
    no_args_is_help=True,
    add_completion=False,  # `gatewayctl completion SHELL` prints the static scripts of completions/
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,  # plain help (gatewayctl/cli/help.py): rich panels cut option names
    context_settings={"help_option_names": HELP_OPTION_NAMES},  # inherited by every subcommand
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
app.command()(completion.completion)
app.command()(top.top)


def main() -> None:
    """Console-script entry point (``gatewayctl``)."""
    app(prog_name="gatewayctl")
