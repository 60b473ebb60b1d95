"""``gatewayctl validate CONFIG...``: check config files the way ``serve`` loads them.

``--no-secrets`` checks everything but whether the secrets resolve (``$ENV`` set, key files
readable): for CI jobs that hold no production keys. A reference must still be well formed.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import typer

from gateway_server.errors import ConfigError, ConfigIssue
from gatewayctl.cli import output
from gatewayctl.cli.exit_codes import ExitCode
from gatewayctl.cli.options import Output

__all__ = ["validate"]


@dataclass
class _FileResult:
    path: str
    routes: int | None = None
    issues: list[ConfigIssue] = field(default_factory=list)
    warnings: list[ConfigIssue] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {
            "path": self.path,
            "valid": not self.issues,
            "routes": self.routes,
            "issues": [issue.to_dict() for issue in self.issues],
            "warnings": [warning.to_dict() for warning in self.warnings],
        }


STDIN = "-"


def _check(path: str, resolve_secrets: bool = True) -> _FileResult:
    """One file's result; a path that cannot be read is an issue of that file, not a usage error."""
    from gateway_server.config import load_config, parse_config  # pydantic, and the named providers
    from gateway_server.secrets import unresolved

    try:
        with contextlib.nullcontext() if resolve_secrets else unresolved():
            if path == STDIN:
                config = parse_config(sys.stdin.read(), path="<stdin>")
                path = "<stdin>"
            elif Path(path).is_dir():
                return _FileResult(
                    path, issues=[ConfigIssue("is a directory; give its files (e.g. dir/*.yaml)", path=path)]
                )
            else:
                config = load_config(path)
    except ConfigError as exc:
        return _FileResult(path, issues=list(exc.issues))
    except OSError as exc:
        reason = "no such file" if isinstance(exc, FileNotFoundError) else exc.strerror or str(exc)
        return _FileResult(path, issues=[ConfigIssue(f"cannot read the file: {reason}", path=path)])
    except UnicodeDecodeError as exc:
        return _FileResult(path, issues=[ConfigIssue(f"not UTF-8 text: {exc.reason}", path=path)])
    return _FileResult(path, routes=len(config.routes), warnings=list(config.warnings))


def validate(
    configs: Annotated[
        list[str],
        typer.Argument(metavar="CONFIG", help="Config files (YAML); - reads one from stdin."),
    ],
    output_format: Output = output.OutputFormat.TEXT,
    no_secrets: Annotated[
        bool,
        typer.Option(
            "--no-secrets",
            help="Check everything except that secrets resolve ($ENV set, key files readable): "
            "for CI jobs without production keys.",
        ),
    ] = False,
) -> None:
    """Check config files; print every problem as file:line: route 'name': field: message.

    Exits 0 when every file is valid (warnings are printed but do not fail), 3 otherwise. A
    missing file or a directory is a problem of that file, reported like the others. With
    --output json the result is always one JSON document on stdout (for CI).

    Examples:

    \b
      gatewayctl validate gateway.yaml
      gatewayctl validate configs/*.yaml -o json
      gatewayctl validate --no-secrets gateway.yaml
      envsubst < gateway.template.yaml | gatewayctl validate -
    """
    results = [_check(path, resolve_secrets=not no_secrets) for path in configs]
    if output_format is output.OutputFormat.JSON:
        output.emit_json(
            {"valid": all(not r.issues for r in results), "files": [r.to_dict() for r in results]}
        )
    else:
        _print_results(results)
    if any(result.issues for result in results):
        raise typer.Exit(ExitCode.INVALID_CONFIG)


def _print_results(results: list[_FileResult]) -> None:
    problems = 0
    for result in results:
        for warning in result.warnings:
            output.warn(str(warning))
        for issue in result.issues:
            output.print_text(str(issue))
        problems += len(result.issues)
        if not result.issues:
            output.say(f"{result.path}: OK ({result.routes} route{'s' * (result.routes != 1)})")
    if problems:
        invalid = sum(1 for result in results if result.issues)
        output.say(f"{problems} problem{'s' * (problems != 1)} in {invalid} of {len(results)} file(s).")
