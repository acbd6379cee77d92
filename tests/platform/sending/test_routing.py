"""IP pool strategies route deterministically and in the configured proportions."""

from __future__ import annotations

from collections import Counter

import pytest
from sendpost_platform.domain.routing import (
    EmptyPoolError,
    Pool,
    PoolMember,
    Strategy,
    choose_provider,
    mailbox_provider_of,
    weighted_schedule,
)


def picks(
    pool: Pool, n: int, recipient: str = "x@example.net", domain: str = "a.com"
) -> Counter[str]:
    return Counter(
        choose_provider(pool, sequence=i, recipient=recipient, sender_domain=domain)
        for i in range(n)
    )


def test_round_robin_takes_members_in_turn() -> None:
    """Round robin cycles through the members in order."""
    pool = Pool(Strategy.round_robin, (PoolMember("1"), PoolMember("2"), PoolMember("3")))
    chosen = [
        choose_provider(pool, sequence=i, recipient="x@y.z", sender_domain="a.com")
        for i in range(6)
    ]
    assert chosen == ["1", "2", "3", "1", "2", "3"]


def test_weighted_2_3_1_4_distribution_is_exact() -> None:
    """Weights 2/3/1/4 give exactly 20/30/10/40 % over 1000 picks."""
    pool = Pool(
        Strategy.weighted,
        (PoolMember("a", 2), PoolMember("b", 3), PoolMember("c", 1), PoolMember("d", 4)),
    )
    assert dict(picks(pool, 1000)) == {"a": 200, "b": 300, "c": 100, "d": 400}


def test_weighted_schedule_interleaves() -> None:
    """The weighted cycle interleaves members instead of sending runs to one."""
    assert weighted_schedule([2, 3]) == [1, 0, 1, 0, 1]


def test_mailbox_provider_strategy_routes_by_recipient_domain() -> None:
    """Gmail recipients go to the gmail member, Microsoft to its member, the rest to 'others'."""
    pool = Pool(
        Strategy.mailbox_provider,
        (
            PoolMember("g", mailbox_providers=("gmail",)),
            PoolMember("m", mailbox_providers=("microsoft", "yahoo")),
            PoolMember("o", mailbox_providers=("others",)),
        ),
    )
    assert dict(picks(pool, 10, recipient="u@Gmail.com")) == {"g": 10}
    assert dict(picks(pool, 10, recipient="u@hotmail.com")) == {"m": 10}
    assert dict(picks(pool, 10, recipient="u@yahoo.co.uk")) == {"m": 10}
    assert dict(picks(pool, 10, recipient="u@corp.example")) == {"o": 10}


@pytest.mark.parametrize(
    ("recipient", "expected"),
    [
        ("a@gmail.com", "gmail"),
        ("a@googlemail.com", "gmail"),
        ("a@outlook.com", "microsoft"),
        ("a@ymail.com", "yahoo"),
        ("a@icloud.com", "apple"),
        ("a@comcast.net", "comcast"),
        ("a@yandex.ru", "yandex"),
        ("a@gmx.de", "gmx"),
        ("a@mail.ru", "mailru"),
        ("a@zoho.com", "zoho"),
        ("a@qq.com", "qq"),
        ("a@example.org", "others"),
    ],
)
def test_mailbox_provider_of(recipient: str, expected: str) -> None:
    """Recipient domains map to their mailbox provider (SendPost's email types), unknown ones
    to 'others'."""
    assert expected == mailbox_provider_of(recipient)


def test_sending_domain_strategy_with_catch_all() -> None:
    """A member listing the sender domain takes it; others fall to the catch-all member."""
    pool = Pool(
        Strategy.sending_domain,
        (PoolMember("shop", sending_domains=("shop.example",)), PoolMember("rest")),
    )
    assert dict(picks(pool, 5, domain="SHOP.example")) == {"shop": 5}
    assert dict(picks(pool, 5, domain="news.example")) == {"rest": 5}


def test_matching_members_share_by_weight() -> None:
    """Two members for the same mailbox provider share it in proportion to their weights."""
    pool = Pool(
        Strategy.mailbox_provider,
        (
            PoolMember("g1", 1, mailbox_providers=("gmail",)),
            PoolMember("g2", 3, mailbox_providers=("gmail",)),
        ),
    )
    assert dict(picks(pool, 100, recipient="u@gmail.com")) == {"g1": 25, "g2": 75}


def test_empty_pool_is_an_error() -> None:
    """A pool without members cannot route."""
    with pytest.raises(EmptyPoolError):
        choose_provider(
            Pool(Strategy.round_robin), sequence=0, recipient="a@b.c", sender_domain="d"
        )
