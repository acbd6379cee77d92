"""Sub-accounts at SendPost's paths (``X-Account-ApiKey``).

SendPost's ``SubAccountApi``:

- ``POST /api/v1/account/subaccount/`` ``{"name"}`` (``NewSubAccount``) → 201 ``SubAccount``
  with its ``apiKey`` (the ``X-SubAccount-ApiKey`` to send with).
- ``GET /api/v1/account/subaccount/`` (``limit``, ``offset``, ``search``: name contains),
  ``GET /api/v1/account/subaccount/{subaccount_id}``.
- ``PUT /api/v1/account/subaccount/{subaccount_id}`` ``{"name"}`` (``UpdateSubAccount``).
- ``DELETE /api/v1/account/subaccount/{subaccount_id}`` → 200 ``{id, message}``: its key stops
  working at once; its messages, events and statistics stay (the account's stats still count
  them). The default sub-account (``type`` 0, the one created with the account) cannot be
  deleted (403).

Differences from SendPost: keys are stored only as hashes, so ``apiKey`` is in the creation
answer alone (list and get leave it out; a lost key means a new sub-account); ``labels`` is
always empty, ``isPlus`` and ``blocked`` always false. Names are unique per account, ignoring case
(409 otherwise).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import Field, StrictStr
from sqlalchemy.engine import Connection

from sendpost_platform.api.auth import AccountDep
from sendpost_platform.api.deps import ContextDep, IdPath, PageLimit, PageOffset
from sendpost_platform.api.sendpost import (
    UNPROCESSABLE,
    DeleteResponse,
    RequestModel,
    ResponseModel,
    SendPostRoute,
    nanos,
    refuse,
)
from sendpost_platform.errors import Conflict, Forbidden, NotFound
from sendpost_platform.store import accounts

PATH = "/api/v1/account/subaccount/"

router = APIRouter(tags=["sub-accounts"], route_class=SendPostRoute)


class NewSubAccount(RequestModel):
    """SendPost's ``NewSubAccount``."""

    name: StrictStr = Field(max_length=100)


class UpdateSubAccount(RequestModel):
    """SendPost's ``UpdateSubAccount``."""

    name: StrictStr = Field(min_length=1, max_length=100)


class SubAccount(ResponseModel):
    """SendPost's ``SubAccount``."""

    id: int
    account_id: int
    name: str
    api_key: str | None = Field(None, description="Only in the creation answer")
    type: int = Field(description="0 default (created with the account), 1 custom")
    is_plus: bool = False
    labels: list[dict[str, str]] = Field(default_factory=list)
    blocked: bool = False
    created: int = Field(description="UNIX epoch nanoseconds")


def _out(row: accounts.SubAccountRow, api_key: str | None = None) -> SubAccount:
    out = SubAccount(
        id=row.id,
        account_id=row.account_id,
        name=row.name,
        api_key=api_key,
        type=0 if row.default else 1,
        created=nanos(row.created_at),
    )
    return out


def _name(value: str) -> str:
    name = value.strip()
    if not name:
        raise refuse([("name", "must not be empty")])
    return name


def _find(conn: Connection, account_id: int, subaccount_id: int) -> accounts.SubAccountRow:
    found = accounts.find_subaccount(conn, account_id=account_id, subaccount_id=subaccount_id)
    if found is None:
        raise NotFound(f"no sub-account {subaccount_id}")
    return found


_CLASH: dict[int | str, dict[str, Any]] = {
    409: {"description": "The account has a sub-account of that name"}
}


@router.post(PATH, status_code=201, responses={**_CLASH, **UNPROCESSABLE})
def create_sub_account(ctx: ContextDep, account: AccountDep, body: NewSubAccount) -> SubAccount:
    """Create a sub-account; the answer holds its API key, shown only this once."""
    name = _name(body.name)
    with ctx.store.write() as conn:
        if accounts.name_taken(conn, account_id=account.id, name=name):
            raise Conflict(f"a sub-account named {name!r} exists")
        sub, key = accounts.create_subaccount(
            conn, account_id=account.id, name=name, now=ctx.clock.now()
        )
        row = _find(conn, account.id, sub.id)
    return _out(row, key)


@router.get(PATH)
def get_all_sub_accounts(
    ctx: ContextDep,
    account: AccountDep,
    limit: PageLimit = None,
    offset: PageOffset = 0,
    search: Annotated[str | None, Query(max_length=100)] = None,
) -> list[SubAccount]:
    with ctx.store.read() as conn:
        rows = accounts.list_subaccounts(
            conn, account_id=account.id, limit=limit, offset=offset, search=search
        )
    return [_out(r) for r in rows]


@router.get(PATH + "{subaccount_id}")
def get_sub_account(ctx: ContextDep, account: AccountDep, subaccount_id: IdPath) -> SubAccount:
    with ctx.store.read() as conn:
        return _out(_find(conn, account.id, subaccount_id))


@router.put(PATH + "{subaccount_id}", responses={**_CLASH, **UNPROCESSABLE})
def update_sub_account(
    ctx: ContextDep, account: AccountDep, subaccount_id: IdPath, body: UpdateSubAccount
) -> SubAccount:
    name = _name(body.name)
    with ctx.store.write() as conn:
        _find(conn, account.id, subaccount_id)
        if accounts.name_taken(conn, account_id=account.id, name=name, other_than=subaccount_id):
            raise Conflict(f"a sub-account named {name!r} exists")
        accounts.rename_subaccount(conn, subaccount_id=subaccount_id, name=name)
        return _out(_find(conn, account.id, subaccount_id))


@router.delete(
    PATH + "{subaccount_id}",
    responses={403: {"description": "The default sub-account cannot be deleted"}},
)
def delete_sub_account(
    ctx: ContextDep, account: AccountDep, subaccount_id: IdPath
) -> DeleteResponse:
    with ctx.store.write() as conn:
        row = _find(conn, account.id, subaccount_id)
        if row.default:
            raise Forbidden("the default sub-account cannot be deleted")
        accounts.delete_subaccount(conn, subaccount_id=subaccount_id, now=ctx.clock.now())
    return DeleteResponse(id=subaccount_id, message=f"sub-account {row.name!r} deleted")
