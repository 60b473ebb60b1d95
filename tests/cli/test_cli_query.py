"""``gatewayctl query`` against a real gateway on the offline ``fake`` provider."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from cli_helpers import flat
from typer.testing import Result

from gatewayctl.cli.query import answer_texts

Cli = Callable[..., Result]
FAKE_PREFIX = "This is the fake provider answering:"


def test_prompt_on_a_chat_route_sends_messages_and_prints_the_text(cli: Cli, gateway_url: str) -> None:
    result = cli("query", "chat", "--prompt", "hello there", "--gateway-uri", gateway_url)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{FAKE_PREFIX} hello there\n"


def test_prompt_on_a_completions_route_sends_prompt(cli: Cli, gateway_url: str) -> None:
    result = cli("query", "completions", "-p", "once upon", "--gateway-uri", gateway_url)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{FAKE_PREFIX} once upon\n"


def test_json_output_is_the_raw_answer_in_the_envelope(cli: Cli, gateway_url: str) -> None:
    result = cli("query", "chat", "-p", "hi", "-o", "json", "--gateway-uri", gateway_url)
    assert result.exit_code == 0, result.output
    envelope = json.loads(result.stdout)
    assert envelope["version"] == 1
    candidate = envelope["data"]["candidates"][0]
    assert candidate["message"] == {"role": "assistant", "content": f"{FAKE_PREFIX} hi"}
    assert envelope["data"]["metadata"]["route_type"] == "llm/v1/chat"


def test_text_on_an_embeddings_route(cli: Cli, gateway_url: str) -> None:
    result = cli("query", "embeddings", "--text", "a", "--text", "b", "--gateway-uri", gateway_url)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == ["embedding 0", "embedding 1"]
    assert all(" 8 dimensions [" in line for line in lines)
    raw = cli("query", "embeddings", "-t", "a", "-o", "json", "--gateway-uri", gateway_url)
    vectors = json.loads(raw.stdout)["data"]["embeddings"]
    assert len(vectors) == 1
    assert len(vectors[0]) == 8


def test_data_and_file_send_the_body_as_given(cli: Cli, gateway_url: str, tmp_path: Path) -> None:
    body = {"messages": [{"role": "user", "content": "from data"}]}
    result = cli("query", "chat", "--data", json.dumps(body), "--gateway-uri", gateway_url)
    assert result.stdout == f"{FAKE_PREFIX} from data\n"

    path = tmp_path / "body.json"
    path.write_text(json.dumps({"prompt": "from file"}), encoding="utf-8")
    result = cli("query", "completions", "--file", str(path), "--gateway-uri", gateway_url)
    assert result.stdout == f"{FAKE_PREFIX} from file\n"

    result = cli(
        "query", "completions", "-f", "-", "--gateway-uri", gateway_url, input='{"prompt": "from stdin"}'
    )
    assert result.stdout == f"{FAKE_PREFIX} from stdin\n"


def test_stream_prints_the_tokens_as_one_text(cli: Cli, gateway_url: str) -> None:
    result = cli("query", "chat", "-p", "stream me", "--stream", "--gateway-uri", gateway_url)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{FAKE_PREFIX} stream me\n"


def test_stream_json_is_one_envelope_per_chunk(cli: Cli, gateway_url: str) -> None:
    result = cli("query", "completions", "-p", "a b", "--stream", "-o", "json", "--gateway-uri", gateway_url)
    assert result.exit_code == 0, result.output
    envelopes = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(envelopes) > 2
    assert {envelope["version"] for envelope in envelopes} == {1}
    text = "".join("".join(answer_texts(envelope["data"])) for envelope in envelopes)
    assert text == f"{FAKE_PREFIX} a b"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give exactly one of --prompt, --text, --data, --file (got 0)"),
        (["-p", "x", "-d", "{}"], "(got 2)"),
        (["-d", "{not json"], "not valid JSON"),
        (["-d", "[1, 2]"], "expected a JSON object"),
    ],
)
def test_body_usage_errors_exit_2(cli: Cli, gateway_url: str, args: list[str], message: str) -> None:
    result = cli("query", "chat", *args, "--gateway-uri", gateway_url)
    assert result.exit_code == 2
    assert message in flat(result.stderr)


def test_prompt_on_an_embeddings_route_is_a_usage_error(cli: Cli, gateway_url: str) -> None:
    result = cli("query", "embeddings", "-p", "x", "--gateway-uri", gateway_url)
    assert result.exit_code == 2
    assert "embeddings route; use --text" in flat(result.stderr)


def test_unknown_route_exits_4(cli: Cli, gateway_url: str) -> None:
    result = cli("query", "nope", "-d", "{}", "--gateway-uri", gateway_url)
    assert result.exit_code == 4
    assert "'nope'" in result.stderr


def test_answer_texts_reads_both_generations_of_shapes() -> None:
    assert answer_texts({"candidates": [{"message": {"content": "a"}}, {"text": "b"}]}) == ["a", "b"]
    assert answer_texts({"choices": [{"delta": {"content": "c"}}, {"message": {"content": "d"}}]}) == [
        "c",
        "d",
    ]
    assert answer_texts({"choices": [{"delta": {}}]}) == []
    assert answer_texts({"embeddings": [[1.0]]}) == []
    assert answer_texts(["not", "a", "dict"]) == []
