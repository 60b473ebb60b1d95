"""How every command's ``--help`` reads: plain text a person reads at 80 columns.

Click's plain formatter (no rich panels, which cut long option names at 80 columns), with labels
a person reads: ``FILE``, ``SECONDS``, ``NAME``, ``text|json``, never Typer's ``<list[Path]>``,
``<bool>`` or ``{CONFIG}``. A parameter's ``metavar`` is its label; without one the label comes from
its type (a file is ``FILE``, a number ``NUMBER``, choices are listed). Every command's docstring
ends with an "Examples:" block (a test holds every command to it, including commands added later).

The root group gives every command it holds this format (:func:`house_style`), so a command
registered with a plain ``app.command()`` gets it too.
"""

from __future__ import annotations

from typing import Any, get_args

from typer.core import TyperCommand, TyperGroup

__all__ = ["HelpCommand", "HelpGroup", "house_style", "label"]

HELP_OPTION_NAMES = ["-h", "--help"]


def _is_option(param: Any) -> bool:
    return bool(param.param_type_name == "option")


def label(param: Any) -> str:
    """What a person reads for the value of ``param``: its metavar, else a word for its type."""
    if param.metavar:
        return str(param.metavar)
    desc = param.type_descriptor  # Typer's description of the annotation
    if desc.is_choice:
        return "|".join(str(getattr(choice, "value", choice)) for choice in desc.choices or ())
    if desc.is_path or desc.is_file:
        return "FILE"
    annotation = desc.annotation
    if desc.is_list:
        annotation = get_args(annotation)[0]
    words = {int: "N", float: "NUMBER"}
    default = "TEXT" if _is_option(param) else (param.name or "VALUE").upper()
    return words.get(annotation, default)


def _is_flag(param: Any) -> bool:
    return _is_option(param) and bool(param.is_flag) and not getattr(param, "count", False)


def _argument_usage(param: Any) -> str:
    name = label(param) + ("..." if param.nargs == -1 else "")
    return name if param.required else f"[{name}]"


def _extras(param: Any, ctx: Any) -> list[str]:
    extras = []
    envvar = getattr(param, "envvar", None)
    if envvar and getattr(param, "show_envvar", False):
        extras.append(f"env: {envvar if isinstance(envvar, str) else ', '.join(envvar)}")
    default = param.default
    shown = _is_option(param) and param.show_default is not False
    if shown and default not in (None, False, (), []) and not callable(default) and not _is_flag(param):
        value = getattr(default, "value", default)
        extras.append(f"default: {value}")
    if param.required and _is_option(param):
        extras.append("required")
    return extras


def _record(param: Any, ctx: Any) -> tuple[str, str] | None:
    if getattr(param, "hidden", False):
        return None
    if _is_option(param):
        names = ", ".join(sorted(param.opts + param.secondary_opts, key=len))
        name = names if _is_flag(param) else f"{names} {label(param)}"
    else:
        name = label(param) + ("..." if param.nargs == -1 else "")
    text = getattr(param, "help", None) or ""
    extras = _extras(param, ctx)
    if extras:
        text = f"{text}  [{'; '.join(extras)}]" if text else f"[{'; '.join(extras)}]"
    return name, text


def _format_params(command: Any, ctx: Any, formatter: Any) -> None:
    arguments: list[tuple[str, str]] = []
    options: list[tuple[str, str]] = []
    for param in command.get_params(ctx):
        record = _record(param, ctx)
        if record is not None:
            (options if _is_option(param) else arguments).append(record)
    if arguments:
        with formatter.section("Arguments"):
            formatter.write_dl(arguments)
    if options:
        with formatter.section("Options"):
            formatter.write_dl(options)


def _usage_pieces(command: Any, ctx: Any) -> list[str]:
    pieces = [command.options_metavar] if command.options_metavar else []
    pieces += [_argument_usage(p) for p in command.get_params(ctx) if p.param_type_name == "argument"]
    return pieces


class HelpCommand(TyperCommand):
    """A command whose help follows the house style (see the module docstring)."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        return _usage_pieces(self, ctx)

    def format_options(self, ctx: Any, formatter: Any) -> None:
        _format_params(self, ctx, formatter)


class HelpGroup(TyperGroup):
    """A group of commands with the house help style; every command it holds gets it too."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for command in self.commands.values():
            house_style(command)

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        return [*_usage_pieces(self, ctx), self.subcommand_metavar]

    def format_options(self, ctx: Any, formatter: Any) -> None:
        _format_params(self, ctx, formatter)
        self.format_commands(ctx, formatter)


def house_style(command: Any) -> Any:
    """Give ``command`` (built by Typer as a plain TyperCommand/TyperGroup) the house help format.

    Typer has no app-wide default command class, and commands are registered in several modules
    (and by several people); swapping the class here, where the root group is built, keeps every
    one of them in the same style without each registration having to remember ``cls=``.
    """
    if type(command) is TyperCommand:
        command.__class__ = HelpCommand
    elif type(command) is TyperGroup:
        command.__class__ = HelpGroup
        for sub in command.commands.values():
            house_style(sub)
    command.rich_markup_mode = None
    return command
