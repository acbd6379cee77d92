"""The dashboard's session cookie: signed, self-contained, bound to the account's key (pure).

A browser cannot send ``X-Account-ApiKey``, so the login form takes the key once and answers
with a cookie ``{payload}.{signature}``: the payload is compact JSON, base64url without padding,
holding the account ID, the time of login, a fingerprint of the account's key hash and a random
session ID (sign-out records it as ended, so a copied cookie dies with its session); the
signature is HMAC-SHA256 over the payload with a key derived from the platform secret under its
own label. The key itself is never in the cookie. A session ends when it is older than its
lifetime, when the platform secret changes, when the account's key changes (the fingerprint
no longer matches), or when it is signed out (checked against the store by ``auth.py``).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import hashlib
import hmac
import json
import secrets

COOKIE_NAME = "sp_dashboard"
LIFETIME = dt.timedelta(hours=12)


@dataclasses.dataclass(frozen=True, slots=True)
class Session:
    account_id: int
    issued_at: dt.datetime
    key_fingerprint: str
    session_id: str = dataclasses.field(default_factory=lambda: secrets.token_urlsafe(16))

    @property
    def expires_at(self) -> dt.datetime:
        return self.issued_at + LIFETIME


def session_secret(platform_secret: str) -> bytes:
    """The HMAC key for session cookies (empty secret: ``ValueError``)."""
    if not platform_secret:
        raise ValueError("the platform secret is not set")
    return hmac.new(
        platform_secret.encode(), b"sendpost/dashboard-session/v1", hashlib.sha256
    ).digest()


def key_fingerprint(secret: bytes, key_hash: str) -> str:
    """A short keyed digest of the account's key hash (changes when the key does)."""
    digest = hmac.new(secret, b"key:" + key_hash.encode(), hashlib.sha256).digest()
    return _b64(digest[:12])


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: bytes, payload: str) -> str:
    return _b64(hmac.new(secret, payload.encode(), hashlib.sha256).digest())


def make_cookie(secret: bytes, session: Session) -> str:
    body = {
        "a": session.account_id,
        "t": int(session.issued_at.timestamp()),
        "k": session.key_fingerprint,
        "s": session.session_id,
    }
    payload = _b64(json.dumps(body, separators=(",", ":")).encode())
    return f"{payload}.{_mac(secret, payload)}"


def read_cookie(
    secret: bytes, value: str, *, now: dt.datetime, lifetime: dt.timedelta = LIFETIME
) -> Session | None:
    """The session in a cookie value, or None when it is forged, malformed or expired."""
    if not value.isascii():
        return None
    payload, sep, signature = value.partition(".")
    if not sep or not hmac.compare_digest(signature, _mac(secret, payload)):
        return None
    try:
        body = json.loads(_unb64(payload))
        account_id, issued, fingerprint = body["a"], body["t"], body["k"]
        session_id = body["s"]
    except (ValueError, TypeError, KeyError, binascii.Error):
        return None
    if not (isinstance(account_id, int) and isinstance(issued, int)):
        return None
    if not (isinstance(fingerprint, str) and isinstance(session_id, str)):
        return None
    if not 16 <= len(session_id) <= 64:
        return None
    issued_at = dt.datetime.fromtimestamp(issued, dt.UTC)
    if not issued_at - dt.timedelta(minutes=5) <= now < issued_at + lifetime:
        return None
    return Session(account_id, issued_at, fingerprint, session_id)
