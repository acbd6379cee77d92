"""Bounce processor rules (pure): which envelope addresses are ours, and which recipient a DSN
is about.

The platform sends every message with the envelope sender
``bounces+{messageUUID}+{subAccountId}@sp-bounce.{sender-domain}`` (``smtp/prepare.py``), so a
bounce comes back to an address that names its message. That address is **authoritative** for
the message; the report's recipient blocks only say *which recipient* failed and how.

- :func:`parse_bounce_address` reads the address (case-insensitive, the UUID normalised to its
  canonical lower-case form); anything else is not ours.
- :func:`rejection` says why a parsed address must be refused for a given message (unknown
  message, other sub-account, other sender domain), or None when it is acceptable.
- :func:`attribute` picks the terminal (``Action: failed``) recipient blocks that concern the
  message: those whose Original- or Final-Recipient is the message's recipient; when none
  matches, every terminal block is taken as being about that recipient (an alias or a forward
  rewrote the address; a platform message has exactly one recipient), flagged ``matched=False``.
"""

from __future__ import annotations

import dataclasses
import re
import uuid as uuid_mod
from collections.abc import Iterable
from typing import Generic, Protocol, TypeVar

BOUNCE_SUBDOMAIN = "sp-bounce"
_ADDRESS = re.compile(r"^bounces\+([0-9a-fA-F-]{32,36})\+(\d{1,19})@sp-bounce\.([^@\s]+)$", re.I)


@dataclasses.dataclass(frozen=True, slots=True)
class BounceAddress:
    message_uuid: str
    subaccount_id: int
    sender_domain: str
    """The domain after ``sp-bounce.``, lower-cased."""


class RecipientBlock(Protocol):
    """What attribution reads of one recipient block of a report (``smtp/dsn.py``'s
    ``DsnRecipient`` has it; this module does not depend on the parser)."""

    @property
    def final_recipient(self) -> str | None: ...

    @property
    def original_recipient(self) -> str | None: ...

    @property
    def terminal(self) -> bool: ...


B = TypeVar("B", bound=RecipientBlock)


@dataclasses.dataclass(frozen=True, slots=True)
class Attributed(Generic[B]):
    """One failed recipient block of a report, attributed to the message's recipient."""

    recipient: B
    matched: bool
    """True when the block names the message's recipient; False when it was inferred."""


def parse_bounce_address(address: str) -> BounceAddress | None:
    """``bounces+{uuid}+{subAccountId}@sp-bounce.{domain}`` → its parts; None when not ours."""
    match = _ADDRESS.match(address.strip().strip("<>"))
    if match is None:
        return None
    try:
        message_uuid = str(uuid_mod.UUID(match.group(1)))
    except ValueError:
        return None
    domain = match.group(3).lower().rstrip(".")
    if not domain or ".." in domain:
        return None
    return BounceAddress(message_uuid, int(match.group(2)), domain)


def sender_domain(sender: str) -> str:
    return sender.rpartition("@")[2].strip().lower().rstrip(".")


def rejection(
    address: BounceAddress, *, found: bool, subaccount_id: int | None, sender: str | None
) -> str | None:
    """Why mail to ``address`` is refused, given what the store knows about its message."""
    if not found:
        return f"unknown message {address.message_uuid}"
    if subaccount_id != address.subaccount_id:
        return (
            f"message {address.message_uuid} does not belong to sub-account {address.subaccount_id}"
        )
    expected = sender_domain(sender or "")
    if expected != address.sender_domain:
        return (
            f"{BOUNCE_SUBDOMAIN}.{address.sender_domain} is not the return-path domain of "
            f"message {address.message_uuid}"
        )
    return None


def _key(address: str | None) -> str:
    return (address or "").strip().lower()


def attribute(recipients: Iterable[B], message_recipient: str) -> list[Attributed[B]]:
    """The terminal recipient blocks that concern ``message_recipient`` (see module docstring)."""
    terminal = [r for r in recipients if r.terminal]
    wanted = _key(message_recipient)
    matching = [
        r
        for r in terminal
        if wanted and wanted in (_key(r.original_recipient), _key(r.final_recipient))
    ]
    if matching:
        return [Attributed(r, True) for r in matching]
    return [Attributed(r, False) for r in terminal]
