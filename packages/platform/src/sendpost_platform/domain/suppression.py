"""Suppression rules (pure): who must not be mailed again, and how addresses are compared.

A suppression belongs to a sub-account and names one recipient address. Addresses compare
case-insensitively after trimming (the local part is case-sensitive in theory, in practice no
mailbox provider treats it so, and a suppression that misses its recipient is the costly error).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable


class SuppressionReason(enum.StrEnum):
    unsubscribe = "unsubscribe"
    hard_bounce = "hard_bounce"
    spam_report = "spam_report"
    manual = "manual"


def normalize_address(address: str) -> str:
    return address.strip().lower()


def suppressed(recipients: Iterable[str], suppressions: Iterable[str]) -> set[str]:
    """The normalised recipients that appear in the suppression list."""
    blocked = {normalize_address(a) for a in suppressions}
    return {normalize_address(r) for r in recipients} & blocked
