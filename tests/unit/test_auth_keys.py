"""auth.KeyTable: keys from config, Bearer parsing, scopes, constant-time comparison on digests."""

from __future__ import annotations

import hashlib
import time

import pytest

from gateway_server.auth import ADMIN, QUERY, KeyTable
from gateway_server.config import AuthConfig
from gateway_server.errors import AuthenticationError, ConfigError, PermissionDeniedError

CI_KEY = "gk-ci-0123456789"
OPS_KEY = "gk-ops-9876543210"


def _headers(value: str | None) -> list[tuple[bytes, bytes]]:
    headers = [(b"host", b"127.0.0.1"), (b"content-type", b"application/json")]
    if value is not None:
        headers.append((b"authorization", value.encode()))
    return headers


@pytest.fixture
def table(monkeypatch: pytest.MonkeyPatch) -> KeyTable:
    monkeypatch.setenv("GW_KEY_CI", CI_KEY)
    auth = AuthConfig.model_validate(
        {
            "keys": [
                {"name": "ci-bot", "key": "$GW_KEY_CI", "scopes": ["query"]},
                {
                    "name": "ops",
                    "key_sha256": hashlib.sha256(OPS_KEY.encode()).hexdigest(),
                    "scopes": ["query", "admin"],
                },
                {"name": "admin-only", "key": "gk-literal-admin", "scopes": ["admin"]},
            ]
        }
    )
    return KeyTable.from_config(auth)


def test_auth_env_key_authorizes_query(table: KeyTable) -> None:
    assert table.authorize(_headers(f"Bearer {CI_KEY}"), QUERY) == "ci-bot"


def test_auth_sha256_key_authorizes_admin(table: KeyTable) -> None:
    assert table.authorize(_headers(f"Bearer {OPS_KEY}"), ADMIN) == "ops"
    assert table.authorize(_headers(f"bearer   {OPS_KEY}  "), QUERY) == "ops"  # scheme case, spaces


def test_auth_literal_key_and_scopes_are_independent(table: KeyTable) -> None:
    assert table.authorize(_headers("Bearer gk-literal-admin"), ADMIN) == "admin-only"
    with pytest.raises(PermissionDeniedError, match="'admin-only' does not have the 'query' scope"):
        table.authorize(_headers("Bearer gk-literal-admin"), QUERY)


def test_auth_query_key_cannot_admin(table: KeyTable) -> None:
    with pytest.raises(PermissionDeniedError) as info:
        table.authorize(_headers(f"Bearer {CI_KEY}"), ADMIN)
    assert info.value.status_code == 403
    assert CI_KEY not in info.value.message


@pytest.mark.parametrize("value", [None, "", "Bearer", "Bearer   ", f"Basic {CI_KEY}", CI_KEY])
def test_auth_missing_key_is_401(table: KeyTable, value: str | None) -> None:
    with pytest.raises(AuthenticationError, match="Missing API key") as info:
        table.authorize(_headers(value), QUERY)
    assert info.value.status_code == 401
    assert info.value.headers() == {"WWW-Authenticate": "Bearer"}


def test_auth_wrong_key_is_401_and_not_echoed(table: KeyTable) -> None:
    with pytest.raises(AuthenticationError, match="Invalid API key") as info:
        table.authorize(_headers("Bearer gk-wrong-key-SENTINEL"), QUERY)
    assert "SENTINEL" not in info.value.message
    # the hash of a configured key is not a key
    with pytest.raises(AuthenticationError):
        table.authorize(_headers(f"Bearer {hashlib.sha256(OPS_KEY.encode()).hexdigest()}"), QUERY)


def test_auth_without_keys_queries_are_open_admin_is_refused() -> None:
    table = KeyTable.from_config(None)
    assert not table.enabled
    assert table.authorize(_headers(None), QUERY) is None
    with pytest.raises(PermissionDeniedError, match="--allow-unauthenticated-admin"):
        table.authorize(_headers(None), ADMIN)


def test_auth_flag_opens_admin_only_without_keys(table: KeyTable) -> None:
    assert (
        KeyTable.from_config(None, allow_unauthenticated_admin=True).authorize(_headers(None), ADMIN) is None
    )
    with_keys = KeyTable.from_config(
        AuthConfig.model_validate({"keys": [{"name": "a", "key": "k-1234"}]}),
        allow_unauthenticated_admin=True,
    )
    with pytest.raises(AuthenticationError):
        with_keys.authorize(_headers(None), ADMIN)


def test_auth_same_key_twice_is_a_config_error() -> None:
    auth = AuthConfig.model_validate(
        {
            "keys": [
                {"name": "a", "key": "same-key-1"},
                {"name": "b", "key_sha256": hashlib.sha256(b"same-key-1").hexdigest()},
            ]
        }
    )
    with pytest.raises(ConfigError, match="'a' and 'b' are the same key") as info:
        KeyTable.from_config(auth)
    assert "same-key-1" not in str(info.value)


def test_auth_repr_shows_names_not_digests(table: KeyTable) -> None:
    assert table.names == ["ci-bot", "ops", "admin-only"]
    text = repr(table._keys)
    assert "ci-bot" in text
    assert hashlib.sha256(OPS_KEY.encode()).hexdigest() not in text


def test_auth_check_costs_microseconds(table: KeyTable) -> None:
    headers = _headers(f"Bearer {OPS_KEY}")
    rounds = 20_000
    started = time.perf_counter()
    for _ in range(rounds):
        table.authorize(headers, QUERY)
    per_call = (time.perf_counter() - started) / rounds
    assert per_call < 50e-6, f"{per_call * 1e6:.1f} µs per check"  # ~2 µs here; generous for slow CI
