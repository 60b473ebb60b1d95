"""Helpers shared by the CLI tests (a module, not conftest, so tests can import them by a unique name)."""

from __future__ import annotations

FAKE_CONFIG = """\
routes:
  - name: chat
    route_type: llm/v1/chat
    model: {provider: fake, name: fake-chat, config: {}}
  - name: completions
    route_type: llm/v1/completions
    model: {provider: fake, name: fake-completions, config: {}}
  - name: embeddings
    route_type: llm/v1/embeddings
    model: {provider: fake, name: fake-embeddings, config: {}}
"""


def flat(text: str) -> str:
    """``text`` with rich's panel borders and line wrapping removed, for matching whole messages."""
    return " ".join(text.replace("│", " ").replace("╭", " ").replace("╰", " ").split())


ADMIN_KEY = "gk-admin-cli-test"
AUTH_SECTION = """\
auth:
  keys:
    - {name: ops, key: $CLI_TEST_ADMIN_KEY, scopes: [query, admin]}
"""
