"""Encryption at rest of secrets the platform must read back (SMTP passwords).

``SecretBox(secret_key)`` derives a 256-bit key from the platform secret (``SENDPOST_SECRET_KEY``)
with HKDF-SHA256 under a fixed purpose label, and seals values with Fernet (AES-128-CBC plus
HMAC-SHA256, from ``cryptography``): a token is authenticated, so a tampered or foreign token is
refused rather than decrypted to garbage. Stored form: ``"v1:" + Fernet token`` (ASCII).

Key rotation: pass the previous secrets as ``old_secret_keys``; tokens sealed under any of them
still open, new tokens use the current secret.

Errors::

    PlatformError
    └── CryptoError          the secret is unusable, or a token cannot be opened with it
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sendpost_platform.errors import PlatformError

_PURPOSE = b"sendpost/smtp-password/v1"
_PREFIX = "v1:"


class CryptoError(PlatformError):
    """The platform secret is unusable, or a stored token cannot be opened with it."""


def _fernet(secret_key: str, purpose: bytes) -> Fernet:
    if not secret_key:
        raise CryptoError("SENDPOST_SECRET_KEY is empty: cannot encrypt or decrypt secrets")
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(
        secret_key.encode("utf-8")
    )
    return Fernet(base64.urlsafe_b64encode(derived))


class SecretBox:
    """Seals and opens short secrets with a key derived from the platform secret."""

    def __init__(
        self, secret_key: str, *, old_secret_keys: Sequence[str] = (), purpose: bytes = _PURPOSE
    ) -> None:
        keys = [_fernet(secret_key, purpose)] + [_fernet(k, purpose) for k in old_secret_keys]
        self._fernet = MultiFernet(keys)

    def seal(self, plaintext: str) -> str:
        return _PREFIX + self._fernet.encrypt(plaintext.encode("utf-8")).decode("ascii")

    def open(self, token: str) -> str:
        if not token.startswith(_PREFIX):
            raise CryptoError("unknown secret format")
        try:
            return self._fernet.decrypt(token[len(_PREFIX) :].encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError) as exc:
            raise CryptoError("cannot decrypt: wrong platform secret or damaged value") from exc
