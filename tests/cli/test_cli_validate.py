"""``gatewayctl validate``: exit 0 when valid, 3 with every problem as file:line: route: field: message."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
from cli_helpers import FAKE_CONFIG
from typer.testing import Result

from gateway_server.errors import ConfigIssue

Cli = Callable[..., Result]
REPO = Path(__file__).resolve().parents[2]
INVALID_SAMPLES = sorted((REPO / "sample-configs" / "invalid").glob("*.yaml"))

TWO_PROBLEMS = """\
routes:
  - name: chat
    route_type: llm/v1/chat
    model: {provider: fake, name: fake-chat}
  - name: typo
    route_type: llm/v1/chat
    modle: {provider: fake, name: fake-chat}
  - name: bad-type
    route_type: llm/v1/images
    model: {provider: fake, name: fake-chat}
"""


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_valid_config_exits_0(cli: Cli, tmp_path: Path) -> None:
    path = write(tmp_path, "good.yaml", FAKE_CONFIG)
    result = cli("validate", path)
    assert result.exit_code == 0
    assert result.stdout == ""
    assert f"{path}: OK (3 routes)" in result.stderr


def test_every_problem_is_one_located_line_and_exit_is_3(cli: Cli, tmp_path: Path) -> None:
    path = write(tmp_path, "bad.yaml", TWO_PROBLEMS)
    result = cli("validate", path)
    assert result.exit_code == 3
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"{path}:7: route 'typo': modle: unknown key 'modle'")
    assert lines[1].startswith(f"{path}:9: route 'bad-type': route_type: must be one of")
    assert "2 problems in 1 of 1 file(s)." in result.stderr
    assert "Traceback" not in result.output


def test_all_files_are_checked_and_one_bad_file_fails_the_run(cli: Cli, tmp_path: Path) -> None:
    good = write(tmp_path, "good.yaml", FAKE_CONFIG)
    bad = write(tmp_path, "bad.yaml", TWO_PROBLEMS)
    result = cli("validate", bad, good)
    assert result.exit_code == 3
    assert all(line.startswith(f"{bad}:") for line in result.stdout.splitlines())
    assert f"{good}: OK (3 routes)" in result.stderr


@pytest.mark.parametrize("sample", INVALID_SAMPLES, ids=lambda path: path.stem)
def test_invalid_samples_print_exactly_their_expected_text(
    cli: Cli, sample: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO)
    relative = str(sample.relative_to(REPO))
    result = cli("validate", relative)
    assert result.exit_code == 3
    assert result.stdout == sample.with_suffix(".expected.txt").read_text(encoding="utf-8")


def test_json_output_is_a_versioned_envelope(cli: Cli, tmp_path: Path) -> None:
    good = write(tmp_path, "good.yaml", FAKE_CONFIG)
    bad = write(tmp_path, "bad.yaml", TWO_PROBLEMS)
    result = cli("validate", "--output", "json", good, bad)
    assert result.exit_code == 3
    envelope = json.loads(result.stdout)
    assert envelope["version"] == 1
    data = envelope["data"]
    assert data["valid"] is False
    assert [(f["path"], f["valid"], f["routes"]) for f in data["files"]] == [
        (good, True, 3),
        (bad, False, None),
    ]
    issue = data["files"][1]["issues"][0]
    assert set(issue) == {"path", "line", "route", "field", "message"}
    assert (issue["path"], issue["line"], issue["route"], issue["field"]) == (bad, 7, "typo", "modle")


def test_json_output_of_a_valid_file_exits_0(cli: Cli, tmp_path: Path) -> None:
    result = cli("validate", "-o", "json", write(tmp_path, "good.yaml", FAKE_CONFIG))
    assert result.exit_code == 0
    assert json.loads(result.stdout)["data"]["valid"] is True


def test_warnings_are_printed_but_do_not_fail(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "warn.yaml", FAKE_CONFIG)
    warning = ConfigIssue(
        "provider 'x' does not offer llm/v1/embeddings", path=path, line=4, route="e", field="model.provider"
    )
    loaded = SimpleNamespace(routes=[object()], warnings=[warning])
    monkeypatch.setattr("gateway_server.config.load_config", lambda config_path: loaded)
    result = cli("validate", path)
    assert result.exit_code == 0
    assert f"warning: {path}:4: route 'e': model.provider: provider 'x' does not offer" in result.stderr
    json_result = cli("validate", "-o", "json", path)
    assert json.loads(json_result.stdout)["data"]["files"][0]["warnings"] == [warning.to_dict()]


def test_missing_file_is_a_problem_of_that_file_and_the_others_are_still_checked(
    cli: Cli, tmp_path: Path
) -> None:
    good = write(tmp_path, "good.yaml", FAKE_CONFIG)
    missing = str(tmp_path / "nope.yaml")
    result = cli("validate", missing, good)
    assert result.exit_code == 3
    assert f"{missing}: config file not found" in result.stdout
    assert f"{good}: OK (3 routes)" in result.stderr


def test_json_output_is_json_for_a_directory_a_missing_path_and_a_good_file(cli: Cli, tmp_path: Path) -> None:
    good = write(tmp_path, "good.yaml", FAKE_CONFIG)
    missing = str(tmp_path / "nope.yaml")
    result = cli("validate", "-o", "json", str(tmp_path), missing, good)
    assert result.exit_code == 3
    files = json.loads(result.stdout)["data"]["files"]  # never a usage box
    assert [(f["path"], f["valid"]) for f in files] == [
        (str(tmp_path), False),
        (missing, False),
        (good, True),
    ]
    assert "is a directory" in files[0]["issues"][0]["message"]
    assert "not found" in files[1]["issues"][0]["message"]


def test_json_output_with_no_file_is_a_json_usage_error_on_stderr(cli: Cli) -> None:
    result = cli("validate", "--output", "json")
    assert result.exit_code == 2
    assert result.stdout == ""
    error = json.loads(result.stderr)["error"]
    assert error["type"] == "usage_error" and error["exit_code"] == 2
    assert "CONFIG" in error["message"]


def test_a_config_is_read_from_stdin_with_a_dash(cli: Cli) -> None:
    result = cli("validate", "-", input=FAKE_CONFIG)
    assert result.exit_code == 0, result.output
    assert "<stdin>: OK (3 routes)" in result.stderr
    bad = cli("validate", "-o", "json", "-", input="routes:\n  - name: x\n    route_typ: llm/v1/chat\n")
    assert bad.exit_code == 3
    issues = json.loads(bad.stdout)["data"]["files"][0]["issues"]
    assert ("<stdin>", 3, "route_typ") in [(i["path"], i["line"], i["field"]) for i in issues]


def test_secret_values_never_appear(cli: Cli, tmp_path: Path) -> None:
    config = """\
routes:
  - name: chat
    route_type: llm/v1/chat
    model:
      provider: openai
      name: gpt-4o-mini
      config: {openai_api_key: sk-literal-secret-123, openai_api_typo: x}
"""
    result = cli("validate", "-o", "json", write(tmp_path, "secret.yaml", config))
    assert result.exit_code == 3
    assert "sk-literal-secret-123" not in result.output


SAMPLES = sorted((REPO / "sample-configs").glob("*.yaml"))


def test_no_secrets_passes_every_sample_config_without_keys(cli: Cli) -> None:
    # The test environment holds no provider keys (tests/conftest.py deletes *_API_KEY).
    without = [path for path in SAMPLES if cli("validate", str(path)).exit_code != 0]
    assert len(without) >= 5  # most samples need keys to validate...
    for path in SAMPLES:  # ...and none does with --no-secrets
        result = cli("validate", "--no-secrets", str(path))
        assert result.exit_code == 0, result.stdout + result.stderr


def test_no_secrets_still_checks_everything_else(cli: Cli, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "bad.yaml",
        """\
routes:
  - name: chat
    route_type: llm/v1/chat
    model: {provider: openai, name: m, config: {openai_api_key: $NOT_SET_ANYWHERE, openai_api_bse: x}}
""",
    )
    result = cli("validate", "--no-secrets", path)
    assert result.exit_code == 3
    assert "unknown key 'openai_api_bse'" in result.stdout and "NOT_SET_ANYWHERE" not in result.stdout


def test_misspelt_key_path_is_an_error(cli: Cli, tmp_path: Path) -> None:
    typo = tmp_path / "openai_key_typo"
    path = write(
        tmp_path,
        "typo.yaml",
        f"""\
routes:
  - name: chat
    route_type: llm/v1/chat
    model: {{provider: openai, name: m, config: {{openai_api_key: {typo}}}}}
""",
    )
    result = cli("validate", path)
    assert result.exit_code == 3
    assert f"{path}:4: route 'chat': model.config.openai_api_key:" in result.stdout
    assert "must be a readable file" in result.stdout and "does not exist" in result.stdout
    assert cli("validate", "--no-secrets", path).exit_code == 0


def test_key_spelled_like_an_env_name_warns(cli: Cli, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "dollar.yaml",
        """\
routes:
  - name: chat
    route_type: llm/v1/chat
    model: {provider: openai, name: m, config: {openai_api_key: OPENAI_API_KEY}}
""",
    )
    result = cli("validate", path)
    assert result.exit_code == 0
    assert f"{path}:4: route 'chat': model.config.openai_api_key:" in result.stderr
    assert "did you mean '$OPENAI_API_KEY'?" in result.stderr


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            'routes:\n  - name: "chat\n    route_type: llm/v1/chat\n    model: {provider: fake}\n',
            ["x.yaml:2: not valid YAML: a quoted string starts here and is never closed"],
            id="unterminated-quote",
        ),
        pytest.param(
            "routes:\n  - name: a\n    route_type: llm/v1/chta\n    model: {provider: fake, name: x}\n"
            "    fallbacks: [{provider: fake, name: y}]\n",
            [
                "x.yaml:3: route 'a': route_type: must be one of 'llm/v1/chat', 'llm/v1/completions' or "
                "'llm/v1/embeddings'; did you mean 'llm/v1/chat'?"
            ],
            id="misspelt-route-type",
        ),
        pytest.param(
            "routes:\n  - name: b\n    route_type: llm/v1/chat\n"
            "    model: {provider: opneai, name: x, config: {openai_api_key: k}}\n",
            ["x.yaml:4: route 'b': model.provider: unknown provider 'opneai'; did you mean 'openai'?"],
            id="misspelt-provider",
        ),
        pytest.param(
            "routes:\n  - name: c\n    route_type: llm/v1/chat\n    model: openai\n",
            [
                "x.yaml:4: route 'c': model: 'openai' is a provider name, but a model is a mapping of "
                "provider, name and config, e.g. {provider: openai, name: MODEL-NAME, config: {...}} "
                "(see docs/providers.md)"
            ],
            id="model-as-a-string",
        ),
        pytest.param(
            "routes:\n  - name: d\n    route_type: llm/v1/embeddings\n"
            "    model: {provider: anthropic, name: c, config: {anthropic_api_key: k}}\n",
            [
                "x.yaml:4: route 'd': model.provider: provider 'anthropic' does not offer llm/v1/embeddings "
                "(it offers llm/v1/chat, llm/v1/completions), so this model could never serve this route"
            ],
            id="primary-model-lacks-the-route-type",
        ),
    ],
)
def test_validate_messages_one_per_problem_where_the_problem_is(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, expected: list[str]
) -> None:
    write(tmp_path, "x.yaml", text)
    monkeypatch.chdir(tmp_path)
    result = cli("validate", "x.yaml")
    assert result.exit_code == 3
    assert result.stdout.splitlines() == expected


def test_top_level_x_keys_are_allowed_for_yaml_anchors(cli: Cli, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "anchors.yaml",
        "x-fake: &fake {provider: fake, name: fake-chat, config: {}}\n"
        "x-notes: anything the file wants to keep\n"
        "routes:\n"
        "  - {name: a, route_type: llm/v1/chat, model: *fake}\n"
        "  - {name: b, route_type: llm/v1/chat, model: *fake}\n",
    )
    result = cli("validate", path)
    assert result.exit_code == 0, result.output
    assert "OK (2 routes)" in result.stderr
    nested = write(
        tmp_path, "nested.yaml", FAKE_CONFIG.replace("  - name: chat\n", "  - name: chat\n    x-note: no\n")
    )
    assert cli("validate", nested).exit_code == 3  # only at the top level


def test_server_keys_that_do_nothing_are_refused(cli: Cli, tmp_path: Path) -> None:
    path = write(tmp_path, "cors.yaml", FAKE_CONFIG + "server:\n  cors_origins: ['https://app.example']\n")
    result = cli("validate", path)
    assert result.exit_code == 3
    assert "server.cors_origins: unknown key 'cors_origins'" in result.stdout
