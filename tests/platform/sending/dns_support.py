"""Helpers shared by the sending tests: DKIM lookups answered from published record data."""

from __future__ import annotations

from collections.abc import Callable, Mapping


def txt_lookup(records: Mapping[str, str]) -> Callable[..., bytes | None]:
    """A ``dnsfunc`` for ``dkim.verify`` that answers TXT queries from ``records`` (name → text)."""

    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        value = records.get(name.decode().rstrip(".").lower())
        return None if value is None else value.encode()

    return lookup
