"""API keys: high-entropy random tokens, shown once, stored only as their SHA-256.

A key is ``{prefix}_{43 url-safe characters}`` (256 bits). Because keys are random and long, a
plain SHA-256 (no salt, no slow hash) is enough and lets the store look a key up by its hash.
"""

from __future__ import annotations

import hashlib
import secrets

ACCOUNT_PREFIX = "spa"
SUBACCOUNT_PREFIX = "sps"
INGEST_PREFIX = "spe"


def generate_key(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()
