"""IP pools and their members (store level); the routing itself is ``domain/routing.py``.

A pool belongs to an account and routes to Custom SMTP providers of the same account (the API
checks that). ``sequence`` is the pool's routing counter: :func:`next_sequence` increments it in
the caller's transaction, so concurrent senders on several API processes never reuse a number.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sendpost_platform.domain.routing import Pool, PoolMember, Strategy
from sendpost_platform.store.dialect import insert_ignore
from sendpost_platform.store.schema import ip_pool_members, ip_pools


@dataclasses.dataclass(frozen=True, slots=True)
class Overflow:
    """Where mail goes when no provider of the pool is live (``should`` off: nowhere)."""

    should: bool = False
    pool_name: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class StoredPool:
    id: int
    account_id: int
    name: str
    strategy: str
    members: tuple[PoolMember, ...]
    created_at: dt.datetime
    updated_at: dt.datetime
    overflow: Overflow = dataclasses.field(default_factory=lambda: Overflow())

    def routing(self) -> Pool:
        return Pool(Strategy(self.strategy), self.members)


def _members(conn: Connection, pool_ids: Sequence[int]) -> dict[int, list[PoolMember]]:
    found: dict[int, list[PoolMember]] = {pid: [] for pid in pool_ids}
    if not pool_ids:
        return found
    rows = conn.execute(
        sa.select(ip_pool_members)
        .where(ip_pool_members.c.pool_id.in_(list(pool_ids)))
        .order_by(ip_pool_members.c.pool_id, ip_pool_members.c.position)
    )
    for r in rows:
        found[r.pool_id].append(
            PoolMember(
                provider_id=str(r.provider_id),
                weight=r.weight,
                mailbox_providers=tuple(r.mailbox_providers or ()),
                sending_domains=tuple(r.sending_domains or ()),
            )
        )
    return found


def _pools(conn: Connection, rows: Sequence[Any]) -> list[StoredPool]:
    members = _members(conn, [r.id for r in rows])
    return [
        StoredPool(
            r.id,
            r.account_id,
            r.name,
            r.strategy,
            tuple(members[r.id]),
            r.created_at,
            r.updated_at,
            Overflow(bool(r.should_overflow), r.overflow_pool_name),
        )
        for r in rows
    ]


def _write_members(conn: Connection, pool_id: int, members: Sequence[PoolMember]) -> None:
    conn.execute(sa.delete(ip_pool_members).where(ip_pool_members.c.pool_id == pool_id))
    if members:
        conn.execute(
            sa.insert(ip_pool_members),
            [
                {
                    "pool_id": pool_id,
                    "provider_id": int(m.provider_id),
                    "position": i,
                    "weight": m.weight,
                    "mailbox_providers": list(m.mailbox_providers) or None,
                    "sending_domains": list(m.sending_domains) or None,
                }
                for i, m in enumerate(members)
            ],
        )


def create_pool(
    conn: Connection,
    *,
    account_id: int,
    name: str,
    strategy: str,
    members: Sequence[PoolMember],
    now: dt.datetime,
    overflow: Overflow | None = None,
) -> StoredPool | None:
    """Insert a pool; None when the account already has one of that name."""
    overflow = overflow or Overflow()
    values = {
        "account_id": account_id,
        "name": name,
        "strategy": strategy,
        "should_overflow": overflow.should,
        "overflow_pool_name": overflow.pool_name,
        "sequence": 0,
        "created_at": now,
        "updated_at": now,
    }
    pool_id = insert_ignore(conn, ip_pools, values, conflict=("account_id", "name"))
    if pool_id is None:
        return None
    _write_members(conn, pool_id, members)
    return get_pool(conn, account_id=account_id, pool_id=pool_id)


def get_pool(conn: Connection, *, account_id: int, pool_id: int) -> StoredPool | None:
    rows = conn.execute(
        sa.select(ip_pools).where(ip_pools.c.id == pool_id, ip_pools.c.account_id == account_id)
    ).all()
    pools = _pools(conn, rows)
    return pools[0] if pools else None


def find_pool(conn: Connection, *, account_id: int, name: str) -> StoredPool | None:
    rows = conn.execute(
        sa.select(ip_pools).where(ip_pools.c.name == name, ip_pools.c.account_id == account_id)
    ).all()
    pools = _pools(conn, rows)
    return pools[0] if pools else None


def list_pools(conn: Connection, *, account_id: int) -> list[StoredPool]:
    rows = conn.execute(
        sa.select(ip_pools).where(ip_pools.c.account_id == account_id).order_by(ip_pools.c.id)
    ).all()
    return _pools(conn, rows)


def update_pool(
    conn: Connection,
    *,
    account_id: int,
    pool_id: int,
    name: str,
    strategy: str,
    members: Sequence[PoolMember],
    now: dt.datetime,
    overflow: Overflow | None = None,
) -> StoredPool | None:
    """Replace a pool's settings and members; None if the pool is unknown."""
    if get_pool(conn, account_id=account_id, pool_id=pool_id) is None:
        return None
    overflow = overflow or Overflow()
    conn.execute(
        sa.update(ip_pools)
        .where(ip_pools.c.id == pool_id)
        .values(
            name=name,
            strategy=strategy,
            should_overflow=overflow.should,
            overflow_pool_name=overflow.pool_name,
            updated_at=now,
        )
    )
    _write_members(conn, pool_id, members)
    return get_pool(conn, account_id=account_id, pool_id=pool_id)


def delete_pool(conn: Connection, *, account_id: int, pool_id: int) -> bool:
    if get_pool(conn, account_id=account_id, pool_id=pool_id) is None:
        return False
    conn.execute(sa.delete(ip_pool_members).where(ip_pool_members.c.pool_id == pool_id))
    conn.execute(sa.delete(ip_pools).where(ip_pools.c.id == pool_id))
    return True


def next_sequence(conn: Connection, pool_id: int, count: int = 1) -> int:
    """Reserve ``count`` routing numbers; returns the first (row-locked until commit)."""
    new_value = conn.execute(
        sa.update(ip_pools)
        .where(ip_pools.c.id == pool_id)
        .values(sequence=ip_pools.c.sequence + count)
        .returning(ip_pools.c.sequence)
    ).scalar_one()
    return int(new_value) - count
