"""The docs stay true: every provider's row matches its adapter, every CLI command is documented."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway_server.providers.catalog import CATALOG, ProviderSpec
from gateway_server.routes import RouteType

DOCS = Path(__file__).resolve().parents[1] / "docs"
LETTERS = {"C": RouteType.CHAT, "Co": RouteType.COMPLETIONS, "E": RouteType.EMBEDDINGS}


def _provider_rows() -> dict[str, list[str]]:
    rows = {}
    for line in (DOCS / "providers.md").read_text(encoding="utf-8").splitlines():
        match = re.match(r"^\| `([^`]+)`[^|]*\|", line)
        if match:
            rows[match.group(1)] = [cell.strip() for cell in line.strip().strip("|").split("|")]
    return rows


def _types(cell: str) -> set[RouteType]:
    return {LETTERS[token] for token in re.findall(r"\b(Co|C|E)\b", cell.split("(")[0])}


@pytest.mark.parametrize("spec", CATALOG, ids=lambda spec: spec.key)
def test_docs_provider_row_matches_the_provider_table(spec: ProviderSpec) -> None:
    rows = _provider_rows()
    assert spec.name in rows, f"docs/providers.md has no row for `{spec.name}`"
    first, route_types, streaming, *_ = rows[spec.name]
    aliases = set(re.findall(r"\(`([^`]+)`", first))
    assert {alias.replace("-", "_") for alias in aliases} == set(spec.aliases), f"{spec.name}: aliases"
    assert _types(route_types) == set(spec.route_types), f"{spec.name}: route types column"
    if spec.streaming_route_types:
        assert _types(streaming) == set(spec.streaming_route_types), f"{spec.name}: streaming column"
    else:
        assert streaming.startswith("no"), f"{spec.name}: streaming column should say no"
    if spec.default_base and spec.default_base.startswith("https://") and "{" not in spec.default_base:
        assert spec.default_base in rows[spec.name][-1], f"{spec.name}: default base in the notes"


def test_docs_no_row_for_an_unknown_provider() -> None:
    assert set(_provider_rows()) <= {spec.name for spec in CATALOG}


def test_docs_every_cli_command_is_documented() -> None:
    import typer.main

    from gatewayctl.cli.app import app

    group = typer.main.get_command(app)
    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    commands = []
    for name, command in group.commands.items():
        subcommands = getattr(command, "commands", None) or {}
        commands += [(f"{name} {sub}", c) for sub, c in subcommands.items()] or [(name, command)]
    for full, command in commands:
        assert f"`gatewayctl {full}" in text, f"docs/cli.md does not document `gatewayctl {full}`"
        for param in command.params:
            for option in getattr(param, "opts", []):
                if option.startswith("--") and option != "--help":
                    assert option in text, f"docs/cli.md does not mention {option} of `{full}`"


def test_docs_every_route_type_is_documented() -> None:
    readme = (DOCS.parent / "README.md").read_text(encoding="utf-8")
    for route_type in RouteType:
        assert route_type.value in readme


def test_docs_cli_exit_code_table_matches_the_cli() -> None:
    from gatewayctl.cli.exit_codes import _MEANINGS

    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| (\d+) \| (.+) \|$", text, re.M))
    assert sorted(int(code) for code in rows) == sorted(int(code) for code in _MEANINGS)
    for code, meaning in _MEANINGS.items():
        first_words = " ".join(meaning.split()[:2]).strip("(`")
        assert first_words.replace("--host/--port", "") in rows[str(int(code))].replace("`", ""), code


def test_docs_cli_says_how_to_install_each_completion_script() -> None:
    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    for shell in ("bash", "zsh", "fish"):
        assert f"gatewayctl completion {shell} >" in text, shell


def test_docs_stand_alone_without_design_note_references() -> None:
    # Readers do not have the project's design notes: say the fact, or link inside docs/.
    for path in [*sorted(DOCS.glob("*.md")), DOCS.parent / "README.md"]:
        text = path.read_text(encoding="utf-8")
        found = re.findall(r"\b(?:SPEC|STYLE)(?:\.md)?\s*§\s*[\d.]+", text)
        assert not found, f"{path.name}: {found}"
