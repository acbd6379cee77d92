"""Accounts and sub-accounts, and looking them up by API key."""

from __future__ import annotations

import dataclasses
import datetime as dt

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sendpost_platform import keys
from sendpost_platform.store.schema import accounts, subaccounts


@dataclasses.dataclass(frozen=True, slots=True)
class Account:
    id: int
    name: str


@dataclasses.dataclass(frozen=True, slots=True)
class SubAccount:
    id: int
    account_id: int
    name: str


@dataclasses.dataclass(frozen=True, slots=True)
class NewAccount:
    """What ``create-account`` prints: the keys exist in plain text only here."""

    account_id: int
    account_key: str
    subaccount_id: int
    subaccount_key: str


def create_account(conn: Connection, *, name: str, now: dt.datetime) -> NewAccount:
    """An account with one sub-account (named like the account); returns both keys once."""
    account_key = keys.generate_key(keys.ACCOUNT_PREFIX)
    account_id = conn.execute(
        sa.insert(accounts)
        .values(name=name, key_hash=keys.hash_key(account_key), created_at=now)
        .returning(accounts.c.id)
    ).scalar_one()
    sub = create_subaccount(conn, account_id=account_id, name=name, now=now)
    return NewAccount(account_id, account_key, sub[0].id, sub[1])


def create_subaccount(
    conn: Connection, *, account_id: int, name: str, now: dt.datetime
) -> tuple[SubAccount, str]:
    key = keys.generate_key(keys.SUBACCOUNT_PREFIX)
    sub_id = conn.execute(
        sa.insert(subaccounts)
        .values(account_id=account_id, name=name, key_hash=keys.hash_key(key), created_at=now)
        .returning(subaccounts.c.id)
    ).scalar_one()
    return SubAccount(sub_id, account_id, name), key


@dataclasses.dataclass(frozen=True, slots=True)
class SubAccountRow:
    """A sub-account as the API lists it: ``default`` is the one created with the account."""

    id: int
    account_id: int
    name: str
    created_at: dt.datetime
    default: bool


def _first_ids(conn: Connection, account_id: int) -> int | None:
    return conn.execute(
        sa.select(sa.func.min(subaccounts.c.id)).where(subaccounts.c.account_id == account_id)
    ).scalar_one_or_none()


def list_subaccounts(
    conn: Connection,
    *,
    account_id: int,
    limit: int | None = None,
    offset: int = 0,
    search: str | None = None,
    subaccount_id: int | None = None,
) -> list[SubAccountRow]:
    """The account's live sub-accounts by ID (``search``: name contains, case-insensitive)."""
    query = sa.select(
        subaccounts.c.id, subaccounts.c.account_id, subaccounts.c.name, subaccounts.c.created_at
    ).where(subaccounts.c.account_id == account_id, subaccounts.c.deleted_at.is_(None))
    if subaccount_id is not None:
        query = query.where(subaccounts.c.id == subaccount_id)
    if search:
        query = query.where(sa.func.lower(subaccounts.c.name).contains(search.lower()))
    query = query.order_by(subaccounts.c.id).offset(offset)
    if limit is not None:
        query = query.limit(limit)
    first = _first_ids(conn, account_id)
    return [
        SubAccountRow(r.id, r.account_id, r.name, r.created_at, r.id == first)
        for r in conn.execute(query)
    ]


def find_subaccount(
    conn: Connection, *, account_id: int, subaccount_id: int
) -> SubAccountRow | None:
    found = list_subaccounts(conn, account_id=account_id, subaccount_id=subaccount_id)
    return found[0] if found else None


def name_taken(
    conn: Connection, *, account_id: int, name: str, other_than: int | None = None
) -> bool:
    query = sa.select(subaccounts.c.id).where(
        subaccounts.c.account_id == account_id,
        subaccounts.c.deleted_at.is_(None),
        sa.func.lower(subaccounts.c.name) == name.lower(),
    )
    if other_than is not None:
        query = query.where(subaccounts.c.id != other_than)
    return conn.execute(query.limit(1)).first() is not None


def rename_subaccount(conn: Connection, *, subaccount_id: int, name: str) -> None:
    conn.execute(sa.update(subaccounts).where(subaccounts.c.id == subaccount_id).values(name=name))


def delete_subaccount(conn: Connection, *, subaccount_id: int, now: dt.datetime) -> None:
    """Mark deleted: its key stops working; its messages, events and statistics stay."""
    conn.execute(
        sa.update(subaccounts).where(subaccounts.c.id == subaccount_id).values(deleted_at=now)
    )


def account_by_key(conn: Connection, key: str) -> Account | None:
    row = conn.execute(
        sa.select(accounts.c.id, accounts.c.name).where(accounts.c.key_hash == keys.hash_key(key))
    ).first()
    return None if row is None else Account(row.id, row.name)


def subaccount_by_key(conn: Connection, key: str) -> SubAccount | None:
    row = conn.execute(
        sa.select(subaccounts.c.id, subaccounts.c.account_id, subaccounts.c.name).where(
            subaccounts.c.key_hash == keys.hash_key(key), subaccounts.c.deleted_at.is_(None)
        )
    ).first()
    return None if row is None else SubAccount(row.id, row.account_id, row.name)


def get_subaccount(conn: Connection, subaccount_id: int) -> SubAccount | None:
    row = conn.execute(
        sa.select(subaccounts.c.id, subaccounts.c.account_id, subaccounts.c.name).where(
            subaccounts.c.id == subaccount_id
        )
    ).first()
    return None if row is None else SubAccount(row.id, row.account_id, row.name)
