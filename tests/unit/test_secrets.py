from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
from pydantic_core import PydanticCustomError

from gateway_server.errors import UpstreamStatusError
from gateway_server.secrets import (
    MASK,
    Secret,
    env_name_hint,
    escape_control,
    redact,
    resolve_secret,
    scrub,
    unresolved,
)


def test_secret_is_masked_everywhere() -> None:
    secret = Secret("sk-very-secret")
    for text in (repr(secret), str(secret), f"{secret}", f"{secret!r}", str([secret]), str({"k": secret})):
        assert "sk-very" not in text
    assert secret.get() == "sk-very-secret"


def test_secret_pickle_never_carries_the_value(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GW_TEST_PICKLED", "sk-env-value-123")
    from_env = resolve_secret("$GW_TEST_PICKLED")
    data = pickle.dumps(from_env)
    assert b"sk-env-value-123" not in data
    assert pickle.loads(data).get() == "sk-env-value-123"  # resolved again where it is loaded
    key_file = tmp_path / "key"
    key_file.write_text("sk-file-value-456\n")
    from_file = resolve_secret(str(key_file))
    data = pickle.dumps(from_file)
    assert b"sk-file-value-456" not in data and pickle.loads(data).get() == "sk-file-value-456"
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(Secret("sk-literal-value-789"))


def test_secret_redact_removes_values() -> None:
    secret = Secret("sk-very-secret")
    assert redact("key sk-very-secret rejected", [secret]) == f"key {MASK} rejected"


def test_secret_redact_masks_a_key_cut_in_half() -> None:
    key = "sk-proj-0123456789abcdefghijKLMNOPQRSTUV"
    secret = Secret(key)
    cut = ("x" * 480 + " Bearer " + key)[:500]  # the upstream text as truncated to 500 characters
    assert key[:12] in cut
    redacted = redact(cut, [secret])
    assert key[:10] not in redacted and redacted.endswith(MASK)
    assert redact(key[-20:] + " was rejected", [secret]) == f"{MASK} was rejected"
    assert redact("sk-proj-other and sk-proj-0123456789abcdefghijKLMNOPQRSTUV", [secret]).count(MASK) == 2


def test_secret_file_is_stripped(tmp_path: Path) -> None:
    path = tmp_path / "k"
    path.write_text("  sk-file \n")
    secret = resolve_secret(str(path))
    assert secret.get() == "sk-file" and secret.source == str(path) and secret.is_reference


def test_secret_path_that_is_not_a_readable_file_is_an_error(tmp_path: Path) -> None:
    typo = str(tmp_path / "openai_key_typo")
    with pytest.raises(PydanticCustomError, match="does not exist"):
        resolve_secret(typo)
    with pytest.raises(PydanticCustomError, match="is a directory"):
        resolve_secret(str(tmp_path))
    with pytest.raises(PydanticCustomError, match="must be a readable file"):
        resolve_secret("./no-such-key-file")
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(PydanticCustomError, match="is empty"):
        resolve_secret(str(tmp_path / "empty"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_secret_unreadable_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_text("sk-x")
    path.chmod(0)
    with pytest.raises(PydanticCustomError, match="not readable"):
        resolve_secret(str(path))


def test_secret_env_looking_literal_gets_a_hint() -> None:
    assert "did you mean '$OPENAI_API_KEY'" in (env_name_hint("OPENAI_API_KEY") or "")
    for literal in ("sk-abc", "AbCdEf_123", "ABCDEF"):
        assert env_name_hint(literal) is None


def test_secret_unresolved_checks_form_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GW_TEST_UNSET", raising=False)
    with unresolved():
        assert resolve_secret("$GW_TEST_UNSET").source == "$GW_TEST_UNSET"
        assert resolve_secret("/run/secrets/not-here").kind == "file"
        with pytest.raises(PydanticCustomError):
            resolve_secret("$")
    with pytest.raises(PydanticCustomError, match="GW_TEST_UNSET"):
        resolve_secret("$GW_TEST_UNSET")


def test_secret_scrub_redacts_and_escapes_an_error() -> None:
    secret = Secret("sk-abcdefghijklmnop")
    error = UpstreamStatusError(
        provider="openai", upstream_status=400, reason="bad key sk-abcdefghijklmnop\nINFO forged line"
    )
    scrub(error, [secret])
    for text in (error.message, str(error), error.reason or "", str(error.to_payload())):
        assert "sk-abcdefghijklmnop" not in text and "\n" not in text
    assert "\\nINFO forged line" in error.message
    assert escape_control("a\r\n\x1b[31mb") == "a\\r\\n\\x1b[31mb"
