"""``gatewayctl validate CONFIG...``: check config files the way ``serve`` loads them.

``--no-secrets`` checks everything but whether the secrets resolve (``$ENV`` set, key files
readable): for CI jobs that hold no production keys. A reference must still be well formed.
"""

from __future__ import annotations

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


def _check(path: str, resolve_secrets: bool = True) -> _FileResult:
    from gateway_server.config import load_config  # pydantic models, and the providers the file names
    from gateway_server.secrets import unresolved

    try:
        if resolve_secrets:
            config = load_config(path)
        else:
            with unresolved():
                config = load_config(path)
    except ConfigError as exc:
        return _FileResult(path, issues=list(exc.issues))
    except OSError as exc:
        return _FileResult(
            path, issues=[ConfigIssue(f"cannot read the file: {exc.strerror or exc}", path=path)]
        )
    return _FileResult(path, routes=len(config.routes), warnings=list(config.warnings))


def validate(
    configs: Annotated[
        list[Path],
        typer.Argument(exists=True, dir_okay=False, metavar="CONFIG", help="Config files (YAML)."),
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

    Exits 0 when every file is valid (warnings are printed but do not fail), 3 otherwise.
    """
    results = [_check(str(path), resolve_secrets=not no_secrets) for path in configs]
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
