"""Tokens and dollars of an answer (gateway_server/usage.py): actual figures, estimates, cost."""

from __future__ import annotations

import json

import pytest

from gateway_server.providers.fake import FakeConfig, answer, answer_stream
from gateway_server.routes import RouteType
from gateway_server.usage import (
    DEFAULT_COMPLETION_RESERVE,
    IMAGE_TOKENS,
    MESSAGE_OVERHEAD_TOKENS,
    Price,
    StreamUsage,
    Usage,
    admission_estimate,
    cost_usd,
    estimate_prompt_tokens,
    estimate_tokens,
    usage_of,
)

CHAT = {"messages": [{"role": "user", "content": "Hello there!"}]}  # 12 characters: 3 tokens


def test_usage_of_reads_the_answer_figures() -> None:
    answer = {
        "choices": [{"message": {"content": "x" * 400}}],
        "usage": {"prompt_tokens": 7, "completion_tokens": 9},
    }
    assert usage_of(answer, CHAT) == Usage(7, 9, estimated=False)


def test_usage_of_takes_completion_from_total_when_missing() -> None:
    answer = {"choices": [{"text": "hi"}], "usage": {"prompt_tokens": 7, "total_tokens": 20}}
    assert usage_of(answer, {"prompt": "hey"}) == Usage(7, 13)


def test_usage_of_embeddings_has_no_completion() -> None:
    answer = {
        "object": "list",
        "data": [{"embedding": [0.1]}],
        "usage": {"prompt_tokens": 5, "total_tokens": 5},
    }
    assert usage_of(answer, {"input": "hello"}) == Usage(5, 0)


def test_usage_of_estimates_missing_figures_and_says_so() -> None:
    answer = {"choices": [{"message": {"content": "abcdefghi"}}], "usage": {"prompt_tokens": None}}
    # prompt: one message (overhead) + ceil(12 / 4); completion: ceil(9 / 4)
    assert usage_of(answer, CHAT) == Usage(MESSAGE_OVERHEAD_TOKENS + 3, 3, estimated=True)


def test_usage_of_ignores_nonsense_figures() -> None:
    answer = {"choices": [{"text": "abcd"}], "usage": {"prompt_tokens": -1, "completion_tokens": True}}
    assert usage_of(answer, {"prompt": "abcdefgh"}) == Usage(2, 1, estimated=True)


def test_estimates_count_text_parts_and_tool_calls() -> None:
    payload = {
        "messages": [{"role": "user", "content": [{"type": "text", "text": "abcd"}, {"type": "image_url"}]}]
    }
    # an image's size is unknown without decoding it: it counts as a large one
    assert estimate_prompt_tokens(payload) == MESSAGE_OVERHEAD_TOKENS + 1 + IMAGE_TOKENS
    answer = {
        "choices": [
            {"message": {"content": None, "tool_calls": [{"function": {"name": "f", "arguments": "{}x"}}]}}
        ]
    }
    assert usage_of(answer, payload).completion == 1
    assert estimate_tokens(0) == 0 and estimate_tokens(1) == 1 and estimate_tokens(8) == 2


def test_estimates_count_what_else_the_model_reads() -> None:
    chat = {"messages": [{"role": "user", "content": "abcd"}]}
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    with_tools = estimate_prompt_tokens({**chat, "tools": tools})
    assert with_tools == estimate_prompt_tokens(chat) + estimate_tokens(len(json.dumps(tools, separators=(",", ":"))))
    calls = {"role": "assistant", "content": None, "tool_calls": [{"function": {"name": "f", "arguments": "x" * 40}}]}
    assert estimate_prompt_tokens({"messages": [calls]}) == MESSAGE_OVERHEAD_TOKENS + 11  # 41 characters
    # Anthropic: system (string or blocks), tool use input, tool result content
    anthropic = {
        "system": [{"type": "text", "text": "s" * 40}],
        "messages": [
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {"q": "abc"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "r" * 8}]},
        ],
    }
    assert estimate_prompt_tokens(anthropic) == 10 + (MESSAGE_OVERHEAD_TOKENS + 3) + (MESSAGE_OVERHEAD_TOKENS + 2)
    # The Responses API: instructions, and input items whose content is a string or parts
    responses = {
        "instructions": "i" * 8,
        "input": [
            {"role": "user", "content": "abcdefgh"},
            {"role": "user", "content": [{"type": "input_text", "text": "abcd"}, {"type": "input_image"}]},
        ],
    }
    assert estimate_prompt_tokens(responses) == 2 + estimate_tokens(8 + 4 + IMAGE_TOKENS * 4)


def test_admission_estimate_uses_max_tokens_and_n() -> None:
    prompt = MESSAGE_OVERHEAD_TOKENS + 3
    assert admission_estimate({**CHAT, "max_tokens": 10, "n": 2}) == prompt + 20
    assert admission_estimate(CHAT) == prompt + DEFAULT_COMPLETION_RESERVE
    assert admission_estimate({"input": ["abcd", "efgh"]}) == 2  # embeddings: no completion


def test_stream_usage_takes_the_final_chunk_usage() -> None:
    tally = StreamUsage()
    tally({"choices": [{"delta": {"content": "Hel"}}]})
    tally({"choices": [{"delta": {"content": "lo"}, "finish_reason": "stop"}]})
    tally({"choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 2, "total_tokens": 13}})
    assert tally.result(CHAT) == Usage(11, 2)


def test_stream_usage_estimates_a_stream_without_usage() -> None:
    tally = StreamUsage()
    for piece in ("abc", "defgh", "i"):
        tally({"choices": [{"delta": {"content": piece}}]})
    assert tally.result({"prompt": "abcd"}) == Usage(1, 3, estimated=True)


def test_stream_usage_of_the_fake_provider_matches_its_whole_answer() -> None:
    payload = {"model": "fake-model", "messages": [{"role": "user", "content": "Say something long enough"}]}
    whole = usage_of(answer(RouteType.CHAT, payload, FakeConfig()), payload)
    tally = StreamUsage()
    for chunk in answer_stream(RouteType.CHAT, payload, FakeConfig()):
        tally(chunk)
    assert tally.result(payload) == whole
    assert not whole.estimated and whole.completion > 0


@pytest.mark.parametrize(
    ("prompt", "completion", "price", "expected"),
    [
        (1_000_000, 0, Price(0.15, 0.60), 0.15),
        (0, 1_000_000, Price(0.15, 0.60), 0.60),
        (2000, 500, Price(3, 15), 0.0135),
        (2000, 500, None, 0.0),
    ],
)
def test_cost_usd(prompt: int, completion: int, price: Price | None, expected: float) -> None:
    assert cost_usd(prompt, completion, price) == pytest.approx(expected)
    assert Usage(prompt, completion).cost(price) == pytest.approx(expected)
