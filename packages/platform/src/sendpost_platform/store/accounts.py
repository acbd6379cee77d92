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


def account_by_key(conn: Connection, key: str) -> Account | None:
    row = conn.execute(
        sa.select(accounts.c.id, accounts.c.name).where(accounts.c.key_hash == keys.hash_key(key))
    ).first()
    return None if row is None else Account(row.id, row.name)


def subaccount_by_key(conn: Connection, key: str) -> SubAccount | None:
    row = conn.execute(
        sa.select(subaccounts.c.id, subaccounts.c.account_id, subaccounts.c.name).where(
            subaccounts.c.key_hash == keys.hash_key(key)
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
