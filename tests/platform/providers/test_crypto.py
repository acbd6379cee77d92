"""SMTP password encryption at rest (crypto.SecretBox)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sendpost_platform.crypto import CryptoError, SecretBox


@given(st.text(max_size=200))
def test_seal_then_open_returns_the_plaintext(plaintext: str) -> None:
    """Any text survives a round trip."""
    box = SecretBox("platform-secret")
    assert box.open(box.seal(plaintext)) == plaintext


def test_sealed_value_does_not_contain_the_plaintext_and_differs_each_time() -> None:
    """Tokens are randomised and do not reveal the password."""
    box = SecretBox("platform-secret")
    first, second = box.seal("hunter2-password"), box.seal("hunter2-password")
    assert "hunter2" not in first
    assert first != second
    assert first.startswith("v1:")


def test_another_secret_cannot_open_the_token() -> None:
    """A token sealed under one platform secret is refused under another."""
    token = SecretBox("secret-a").seal("pw")
    with pytest.raises(CryptoError):
        SecretBox("secret-b").open(token)


def test_tampered_token_is_refused() -> None:
    """Changing one character of a token makes it fail authentication."""
    box = SecretBox("secret-a")
    token = box.seal("pw")
    tampered = token[:-5] + ("A" if token[-5] != "A" else "B") + token[-4:]
    with pytest.raises(CryptoError):
        box.open(tampered)


def test_old_secret_still_opens_after_rotation() -> None:
    """With the previous secret listed as old, its tokens still open."""
    token = SecretBox("old").seal("pw")
    assert SecretBox("new", old_secret_keys=["old"]).open(token) == "pw"


def test_empty_secret_is_refused() -> None:
    """An empty platform secret cannot be used to encrypt."""
    with pytest.raises(CryptoError):
        SecretBox("")
