"""Sender domains: DKIM key material and the outcome of the last DNS verification.

The private key column holds whatever the caller gives (``api/domains.py`` encrypts it). Each row
(one account's claim on one domain) has its own key, so its verified DKIM record
(``dkim_verified``) is that account's proof of control; a domain sends only with both records
verified (``sending.py``). Several accounts may hold rows for the same domain name.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sendpost_platform.store.dialect import insert_ignore
from sendpost_platform.store.schema import relay_queue, sender_domains

KEY_PURPOSE = b"sendpost/dkim-private-key/v1"
"""``crypto.SecretBox`` purpose label under which DKIM private keys are sealed."""


@dataclasses.dataclass(frozen=True, slots=True)
class SenderDomain:
    id: int
    account_id: int
    domain: str
    selector: str
    dkim_algorithm: str
    dkim_private_key: str
    dkim_public_key: str
    dkim_verified: bool
    return_path_verified: bool
    last_checked_at: dt.datetime | None
    last_check: dict[str, Any] | None
    created_at: dt.datetime


_COLUMNS = [sender_domains.c[f.name] for f in dataclasses.fields(SenderDomain)]


def _domain(row: Any) -> SenderDomain:
    return SenderDomain(*row)


def create_domain(
    conn: Connection,
    *,
    account_id: int,
    domain: str,
    selector: str,
    algorithm: str,
    private_key: str,
    public_key: str,
    now: dt.datetime,
) -> SenderDomain | None:
    """Insert a domain; None when the account already has it."""
    new_id = insert_ignore(
        conn,
        sender_domains,
        {
            "account_id": account_id,
            "domain": domain,
            "selector": selector,
            "dkim_algorithm": algorithm,
            "dkim_private_key": private_key,
            "dkim_public_key": public_key,
            "dkim_verified": False,
            "return_path_verified": False,
            "created_at": now,
        },
        conflict=("account_id", "domain"),
    )
    return None if new_id is None else get_domain(conn, account_id=account_id, domain_id=new_id)


def get_domain(conn: Connection, *, account_id: int, domain_id: int) -> SenderDomain | None:
    row = conn.execute(
        sa.select(*_COLUMNS).where(
            sender_domains.c.id == domain_id, sender_domains.c.account_id == account_id
        )
    ).first()
    return None if row is None else _domain(row)


def get_domain_by_id(conn: Connection, domain_id: int) -> SenderDomain | None:
    row = conn.execute(sa.select(*_COLUMNS).where(sender_domains.c.id == domain_id)).first()
    return None if row is None else _domain(row)


def find_domain(conn: Connection, *, account_id: int, domain: str) -> SenderDomain | None:
    row = conn.execute(
        sa.select(*_COLUMNS).where(
            sender_domains.c.account_id == account_id, sender_domains.c.domain == domain.lower()
        )
    ).first()
    return None if row is None else _domain(row)


def list_domains(conn: Connection, *, account_id: int) -> list[SenderDomain]:
    rows = conn.execute(
        sa.select(*_COLUMNS)
        .where(sender_domains.c.account_id == account_id)
        .order_by(sender_domains.c.domain)
    )
    return [_domain(r) for r in rows]


def record_check(
    conn: Connection,
    domain_id: int,
    *,
    dkim_verified: bool,
    return_path_verified: bool,
    check: dict[str, Any],
    now: dt.datetime,
) -> None:
    conn.execute(
        sa.update(sender_domains)
        .where(sender_domains.c.id == domain_id)
        .values(
            dkim_verified=dkim_verified,
            return_path_verified=return_path_verified,
            last_check=check,
            last_checked_at=now,
        )
    )


def delete_domain(conn: Connection, *, account_id: int, domain_id: int) -> bool | None:
    """Delete a domain: True if deleted, False if unknown, None while messages of it wait for
    relay. Finished queue entries of the domain go with it (their events stay)."""
    if get_domain(conn, account_id=account_id, domain_id=domain_id) is None:
        return False
    of_domain = relay_queue.c.domain_id == domain_id
    pending = conn.execute(
        sa.select(sa.func.count()).where(of_domain, relay_queue.c.status == "pending")
    ).scalar_one()
    if pending:
        return None
    conn.execute(sa.delete(relay_queue).where(of_domain))
    conn.execute(sa.delete(sender_domains).where(sender_domains.c.id == domain_id))
    return True
