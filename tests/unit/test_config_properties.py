"""Property: any YAML gives either a config or ``ConfigError`` issues with lines, never a traceback.

Hypothesis builds documents from the config's own vocabulary (keys, providers, route types, values
of the right and the wrong types, nested at random) and from arbitrary text, so that both the near
misses that reach the pydantic models and the garbage that the YAML reader rejects are covered.
"""

from __future__ import annotations

import string
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway_server.config import GatewayConfig, parse_config
from gateway_server.errors import ConfigError

KEYS = [
    "routes", "endpoints", "server", "auth", "keys", "name", "route_type", "endpoint_type", "model",
    "provider", "config", "timeout", "limit", "calls", "renewal_period", "key", "key_sha256", "scopes",
    "retry", "fallbacks", "max_request_bytes", "shared_state", "openai_api_key", "openai_api_base",
    "anthropic_api_key", "aws_config", "aws_region", "models", "weight", "x-note", "credentials",
]  # fmt: skip
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(
        [
            "llm/v1/chat",
            "llm/v1/completions",
            "llm/v1/embeddings",
            "openai",
            "anthropic",
            "fake",
            "bedrock",
            "gemini",
            "minute",
            "second",
            "route",
            "client_ip",
            "query",
            "admin",
            "chat",
            "sk-x",
            "$UNSET_ENV_VAR_FOR_FUZZ",
            "off",
            "",
            " ",
            "a" * 300,
            "http://127.0.0.1:1/v1",
            "~",
        ]
    ),
    st.text(alphabet=string.printable, max_size=20),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=8)), inner, max_size=5),
    ),
    max_leaves=25,
)
ROUTE = st.fixed_dictionaries(
    {},
    optional={
        "name": SCALARS,
        "route_type": st.sampled_from(["llm/v1/chat", "llm/v1/completions", "llm/v1/embeddings", "llm/v2/x"]),
        "model": st.fixed_dictionaries(
            {},
            optional={
                "provider": st.sampled_from(["fake", "openai", "anthropic", "bedrock", "nope", "OpenAI"]),
                "name": SCALARS,
                "config": VALUES,
            },
        ),
        "timeout": SCALARS,
        "limit": VALUES,
        "retry": VALUES,
        "fallbacks": VALUES,
    },
)
DOCUMENTS = st.one_of(
    st.fixed_dictionaries(
        {"routes": st.lists(st.one_of(ROUTE, VALUES), max_size=4)},
        optional={"server": VALUES, "auth": VALUES},
    ),
    st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=4),
    VALUES,
)


def _check(text: str) -> None:
    try:
        config = parse_config(text, path="gateway.yaml")
    except ConfigError as error:
        assert error.issues, "a ConfigError without issues"
        for issue in error.issues:
            assert issue.path == "gateway.yaml" and issue.message, issue
            assert issue.line is not None and issue.line >= 1, f"no line: {issue}"
        return
    assert isinstance(config, GatewayConfig)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=DOCUMENTS)
def test_any_document_gives_a_config_or_located_errors(document: Any) -> None:
    try:
        text = yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
    except (yaml.YAMLError, OverflowError, ValueError):
        return
    _check(text)


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet=string.printable + "\u00e9\u2028\ufeff\x00", max_size=200))
def test_any_text_gives_a_config_or_located_errors(text: str) -> None:
    _check(text)


@settings(max_examples=200, deadline=None)
@given(
    prefix=st.sampled_from(
        [
            "routes:\n  - name: chat\n    route_type: llm/v1/chat\n    model:\n      provider: fake\n      name: m\n",
            "endpoints:\n  - name: e\n    endpoint_type: llm/v1/embeddings\n    model: {provider: fake, name: m}\n",
        ]
    ),
    cut=st.integers(min_value=0, max_value=120),
    junk=st.text(alphabet=string.printable, max_size=30),
)
def test_a_valid_file_cut_or_spliced_anywhere(prefix: str, cut: int, junk: str) -> None:
    _check(prefix[:cut] + junk + prefix[cut:])
