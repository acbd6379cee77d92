"""Pure rules of the bounce processor: return-path addresses and recipient attribution."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st
from sendpost_platform.domain.bounces import (
    BounceAddress,
    attribute,
    parse_bounce_address,
    rejection,
)
from sendpost_platform.smtp.dsn import DsnRecipient
from sendpost_platform.smtp.prepare import envelope_sender

UUID = "0b9c3a5e-1f7d-4c1e-9a51-2d7b8c6e4f10"


def block(final: str | None, original: str | None = None, action: str = "failed") -> DsnRecipient:
    return DsnRecipient(final, original, action, "5.1.1", "smtp", "550 5.1.1 no", 550, None, None)


def test_the_platforms_own_return_path_parses_back() -> None:
    """What smtp/prepare.py puts in MAIL FROM is read back into UUID, sub-account and domain."""
    address = envelope_sender(UUID, "42", "news.example.com")
    assert parse_bounce_address(address) == BounceAddress(UUID, 42, "news.example.com")


def test_letter_case_and_angle_brackets_do_not_matter() -> None:
    """MTAs may change case; the UUID comes back canonical (lower case)."""
    address = f"<BOUNCES+{UUID.upper()}+7@SP-Bounce.Example.COM>"
    assert parse_bounce_address(address) == BounceAddress(UUID, 7, "example.com")


def test_foreign_addresses_are_not_ours() -> None:
    """Other local parts, missing parts, a bad UUID or another host are refused."""
    for address in (
        "postmaster@sp-bounce.example.com",
        f"bounces+{UUID}@sp-bounce.example.com",
        f"bounces+{UUID}+x@sp-bounce.example.com",
        "bounces+not-a-uuid-at-all-but-long-enough+1@sp-bounce.example.com",
        f"bounces+{UUID}+1@example.com",
        f"bounces+{UUID}+1@sp-bounce.",
    ):
        assert parse_bounce_address(address) is None, address


@given(st.text())
def test_parsing_never_raises(text: str) -> None:
    """Arbitrary RCPT arguments give an address or None, never an exception."""
    result = parse_bounce_address(text)
    assert result is None or isinstance(result, BounceAddress)


def test_rejection_names_the_problem() -> None:
    """Unknown message, other sub-account and other domain each have their own reason."""
    address = BounceAddress(UUID, 3, "a.example")
    assert rejection(address, found=False, subaccount_id=None, sender=None) == (
        f"unknown message {UUID}"
    )
    assert rejection(address, found=True, subaccount_id=4, sender="x@a.example") == (
        f"message {UUID} does not belong to sub-account 3"
    )
    assert rejection(address, found=True, subaccount_id=3, sender="x@b.example") == (
        f"sp-bounce.a.example is not the return-path domain of message {UUID}"
    )
    assert rejection(address, found=True, subaccount_id=3, sender="X@A.Example") is None


def test_blocks_naming_the_recipient_win_by_either_address() -> None:
    """Original-Recipient or Final-Recipient may name the message's recipient (any case)."""
    ours = block("alias@internal.example", "User@Example.com")
    other = block("someone@else.example")
    assert attribute([other, ours], "user@example.com") == [
        attribute([ours], "user@example.com")[0]
    ]
    assert attribute([ours], "user@example.com")[0].matched


def test_a_lone_unmatched_failure_is_taken_as_the_messages_recipient() -> None:
    """A forward rewrote the address: the only failed block is attributed, flagged unmatched."""
    [item] = attribute([block("forwarded@elsewhere.example")], "user@example.com")
    assert (item.recipient.final_recipient, item.matched) == ("forwarded@elsewhere.example", False)


def test_non_terminal_blocks_are_never_attributed() -> None:
    """delayed / delivered / relayed / expanded blocks produce nothing."""
    blocks = [block("user@example.com", action=a) for a in ("delayed", "delivered", "relayed")]
    assert attribute(blocks, "user@example.com") == []


def test_uuid_parsing_is_strict_about_hex() -> None:
    """A 36-character string that is no UUID is refused."""
    fake = str(uuid.uuid4()).replace("a", "g").replace("b", "g").replace("c", "g")
    fake = fake if "g" in fake else "g" + fake[1:]
    assert parse_bounce_address(f"bounces+{fake}+1@sp-bounce.example.com") is None
