"""Templates of the send API: a named subject, HTML and text body per sub-account.

Names are unique within a sub-account; ``POST /api/v1/subaccount/email/template`` and the
``template`` field of a send request find a template by name (or by ID, ``templateId``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sendpost_platform.store.schema import templates as table


@dataclasses.dataclass(frozen=True, slots=True)
class StoredTemplate:
    id: int
    subaccount_id: int
    name: str
    subject: str | None
    html_body: str | None
    text_body: str | None
    created_at: dt.datetime
    updated_at: dt.datetime


_COLUMNS = [table.c[f.name] for f in dataclasses.fields(StoredTemplate)]


def create_template(
    conn: Connection, *, subaccount_id: int, values: dict[str, Any], now: dt.datetime
) -> StoredTemplate | None:
    """The new template; None when the sub-account already has one by that name."""
    if find_template(conn, subaccount_id, name=values["name"]) is not None:
        return None
    new_id = conn.execute(
        sa.insert(table)
        .values(subaccount_id=subaccount_id, created_at=now, updated_at=now, **values)
        .returning(table.c.id)
    ).scalar_one()
    found = get_template(conn, subaccount_id, int(new_id))
    assert found is not None
    return found


def get_template(conn: Connection, subaccount_id: int, template_id: int) -> StoredTemplate | None:
    row = conn.execute(
        sa.select(*_COLUMNS).where(
            table.c.subaccount_id == subaccount_id, table.c.id == template_id
        )
    ).first()
    return None if row is None else StoredTemplate(*row)


def find_template(conn: Connection, subaccount_id: int, *, name: str) -> StoredTemplate | None:
    row = conn.execute(
        sa.select(*_COLUMNS).where(table.c.subaccount_id == subaccount_id, table.c.name == name)
    ).first()
    return None if row is None else StoredTemplate(*row)


def list_templates(conn: Connection, subaccount_id: int) -> list[StoredTemplate]:
    rows = conn.execute(
        sa.select(*_COLUMNS).where(table.c.subaccount_id == subaccount_id).order_by(table.c.id)
    )
    return [StoredTemplate(*row) for row in rows]


def update_template(
    conn: Connection,
    subaccount_id: int,
    template_id: int,
    *,
    changes: dict[str, Any],
    now: dt.datetime,
) -> StoredTemplate | None:
    """The updated template; None when there is no such template. The caller checks that a new
    name is free."""
    conn.execute(
        sa.update(table)
        .where(table.c.subaccount_id == subaccount_id, table.c.id == template_id)
        .values(updated_at=now, **changes)
    )
    return get_template(conn, subaccount_id, template_id)


def delete_template(conn: Connection, subaccount_id: int, template_id: int) -> bool:
    result = conn.execute(
        sa.delete(table).where(table.c.subaccount_id == subaccount_id, table.c.id == template_id)
    )
    return bool(result.rowcount)
