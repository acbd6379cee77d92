"""IP pool strategies: which Custom SMTP provider of a pool carries one message (pure).

Every strategy is a deterministic function of the pool, the message and a *sequence number* (a
counter the store increments per pool), so the distribution over many picks is exact and testable:

- ``round_robin``: members in turn.
- ``weighted``: a smooth weighted round robin; over every ``sum(weights)`` consecutive picks each
  member is chosen exactly ``weight`` times, interleaved (2/3/1/4 → 20 %/30 %/10 %/40 %).
- ``mailbox_provider``: members list the recipient mailbox providers they carry (``gmail``,
  ``yahoo``, ``microsoft``, ``apple``, ``aol``, ``comcast``, ``yandex``, ``gmx``, ``mailru``,
  ``zoho``, ``qq``, ``others``: SendPost's email types); the recipient's domain selects them.
- ``sending_domain``: members list the sender domains they carry; a member with no list (or ``*``)
  takes the rest.

Several members matching a rule share it by weight, as ``weighted`` does; when no member matches,
the ``others``/catch-all members are used, and failing those, the whole pool.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field


class Strategy(enum.StrEnum):
    round_robin = "round_robin"
    weighted = "weighted"
    mailbox_provider = "mailbox_provider"
    sending_domain = "sending_domain"


OTHERS = "others"

MAILBOX_PROVIDERS: dict[str, frozenset[str]] = {
    "gmail": frozenset({"gmail.com", "googlemail.com"}),
    "yahoo": frozenset(
        {"yahoo.com", "yahoo.co.uk", "yahoo.fr", "yahoo.de", "ymail.com", "rocketmail.com"}
    ),
    "microsoft": frozenset(
        {"outlook.com", "hotmail.com", "hotmail.co.uk", "live.com", "msn.com", "passport.com"}
    ),
    "apple": frozenset({"icloud.com", "me.com", "mac.com"}),
    "aol": frozenset({"aol.com", "aim.com"}),
    "comcast": frozenset({"comcast.net"}),
    "yandex": frozenset({"yandex.ru", "yandex.com", "ya.ru"}),
    "gmx": frozenset({"gmx.com", "gmx.net", "gmx.de"}),
    "mailru": frozenset({"mail.ru", "inbox.ru", "list.ru", "bk.ru"}),
    "zoho": frozenset({"zoho.com", "zohomail.com"}),
    "qq": frozenset({"qq.com", "foxmail.com"}),
}
"""Recipient domains per mailbox provider; any other domain belongs to ``others``."""

KNOWN_MAILBOX_PROVIDERS: frozenset[str] = frozenset({*MAILBOX_PROVIDERS, OTHERS})


@dataclass(frozen=True)
class PoolMember:
    provider_id: str
    weight: int = 1
    mailbox_providers: tuple[str, ...] = ()
    sending_domains: tuple[str, ...] = ()


@dataclass(frozen=True)
class Pool:
    strategy: Strategy
    members: tuple[PoolMember, ...] = field(default_factory=tuple)


class EmptyPoolError(ValueError):
    """The pool has no member to route to."""


def mailbox_provider_of(recipient: str) -> str:
    domain = recipient.rpartition("@")[2].strip().lower().rstrip(".")
    for name, domains in MAILBOX_PROVIDERS.items():
        if domain in domains:
            return name
    return OTHERS


def weighted_schedule(weights: Sequence[int]) -> list[int]:
    """Smooth weighted round robin: member indexes for one cycle of ``sum(weights)`` picks."""
    current = [0] * len(weights)
    total = sum(weights)
    order: list[int] = []
    for _ in range(total):
        for i, w in enumerate(weights):
            current[i] += w
        best = max(range(len(weights)), key=lambda i: (current[i], -i))
        current[best] -= total
        order.append(best)
    return order


def _by_weight(members: Sequence[PoolMember], sequence: int) -> PoolMember:
    weights = [max(1, m.weight) for m in members]
    schedule = weighted_schedule(weights)
    return members[schedule[sequence % len(schedule)]]


def choose_provider(pool: Pool, *, sequence: int, recipient: str, sender_domain: str) -> str:
    """The provider ID that carries this message; raises :class:`EmptyPoolError`."""
    members = pool.members
    if not members:
        raise EmptyPoolError("the pool has no providers")
    if pool.strategy is Strategy.round_robin:
        return members[sequence % len(members)].provider_id
    if pool.strategy is Strategy.weighted:
        return _by_weight(members, sequence).provider_id
    if pool.strategy is Strategy.mailbox_provider:
        wanted = mailbox_provider_of(recipient)
        chosen = [m for m in members if wanted in m.mailbox_providers]
        if not chosen:
            chosen = [m for m in members if OTHERS in m.mailbox_providers]
    else:
        domain = sender_domain.lower()
        chosen = [m for m in members if domain in (d.lower() for d in m.sending_domains)]
        if not chosen:
            chosen = [m for m in members if not m.sending_domains or "*" in m.sending_domains]
    return _by_weight(chosen or members, sequence).provider_id
