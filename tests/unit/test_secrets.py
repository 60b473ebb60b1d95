from __future__ import annotations

import pickle

from gateway_server.secrets import MASK, Secret, redact, resolve_secret


def test_secret_is_masked_everywhere() -> None:
    secret = Secret("sk-very-secret")
    for text in (repr(secret), str(secret), f"{secret}", f"{secret!r}", str([secret]), str({"k": secret})):
        assert "sk-very" not in text
    assert secret.get() == "sk-very-secret"
    assert pickle.loads(pickle.dumps(secret)).get() == "sk-very-secret"


def test_secret_redact_removes_values() -> None:
    secret = Secret("sk-very-secret")
    assert redact("key sk-very-secret rejected", [secret]) == f"key {MASK} rejected"


def test_secret_file_is_stripped(tmp_path) -> None:
    path = tmp_path / "k"
    path.write_text("  sk-file \n")
    secret = resolve_secret(str(path))
    assert secret.get() == "sk-file" and secret.source == str(path)
