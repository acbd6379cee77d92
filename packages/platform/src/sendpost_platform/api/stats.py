"""Statistics at SendPost's paths (``X-Account-ApiKey``): CS* event counts per UTC day.

SendPost's ``StatsApi`` and ``StatsAApi`` (``from``/``to`` are ``YYYY-MM-DD``, both inclusive):

- ``GET /api/v1/account/subaccount/stat/{subaccount_id}`` → ``[Stat]``, one per day (at most 31
  days), each with its ``date`` added;
  ``GET /api/v1/account/subaccount/stat/{subaccount_id}/aggregate`` → ``AggregateStat`` (366).
- ``GET /api/v1/account/stat`` → ``[AccountStats]`` ``{date, stat}`` per day (31 days);
  ``GET /api/v1/account/stat/aggregate`` → ``AggregateStats`` (366), over every sub-account,
  deleted ones included.
- By group (``.../group``, ``/account/stat/group``, ``/account/stat/aggregate/group``): the
  ``group`` parameter is refused (422 naming ``query.group``) until messages carry their
  ``groups``: counting nothing would look like a group that sent nothing.

What each count is: ``store/reports.py`` (``dropped`` before relay, ``smtpDropped`` by the relay
after its retries; ``deferred`` is added).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Query

from sendpost_platform.api.auth import AccountDep
from sendpost_platform.api.deps import ContextDep, IdPath
from sendpost_platform.api.sendpost import ERROR_CONTENT, ResponseModel, SendPostRoute
from sendpost_platform.errors import BadRequest, NotFound, Unprocessable
from sendpost_platform.store import accounts, reports

router = APIRouter(tags=["statistics"], route_class=SendPostRoute)

DAILY_DAYS = 31
AGGREGATE_DAYS = 366


class Stat(ResponseModel):
    """SendPost's ``Stat`` / ``AggregateStat`` / ``AggregateStats`` / ``DailyStatistics``."""

    processed: int
    sent: int
    dropped: int
    smtp_dropped: int
    delivered: int
    soft_bounced: int
    hard_bounced: int
    opened: int
    clicked: int
    unsubscribed: int
    spam: int
    deferred: int


class DailyStat(Stat):
    """One day's ``Stat`` (``date`` added)."""

    date: dt.date


class AccountStats(ResponseModel):
    """SendPost's ``AccountStats``."""

    date: dt.date
    stat: Stat


def _range(since: dt.date, until: dt.date, most: int) -> None:
    if until < since or (until - since).days >= most:
        raise BadRequest(
            "invalid date range",
            errors=[{"field": "query.to", "message": f"must be from `from`, at most {most} days"}],
        )


def _sub(ctx: ContextDep, account_id: int, subaccount_id: int) -> None:
    with ctx.store.read() as conn:
        found = accounts.find_subaccount(conn, account_id=account_id, subaccount_id=subaccount_id)
    if found is None:
        raise NotFound(f"no sub-account {subaccount_id}")


def _counts(
    ctx: ContextDep, account_id: int, since: dt.date, until: dt.date, sub: int | None
) -> dict[dt.date, dict[str, int]]:
    with ctx.store.read() as conn:
        return reports.daily_counts(
            conn,
            account_id=account_id,
            since=since,
            until=until,
            subaccount_ids=None if sub is None else [sub],
        )


def _total(days: dict[dt.date, dict[str, int]]) -> Stat:
    return Stat.model_validate(
        {name: sum(day[name] for day in days.values()) for name in reports.COUNTS}
    )


From = Annotated[dt.date, Query(alias="from")]
To = Annotated[dt.date, Query()]
_NO_GROUPS: dict[int | str, dict[str, Any]] = {
    422: {"description": "Statistics by group are not available yet", **ERROR_CONTENT}
}


@router.get("/api/v1/account/subaccount/stat/{subaccount_id}")
def account_subaccount_stat(
    ctx: ContextDep, account: AccountDep, subaccount_id: IdPath, from_: From, to: To
) -> list[DailyStat]:
    """One sub-account's counts per day."""
    _range(from_, to, DAILY_DAYS)
    _sub(ctx, account.id, subaccount_id)
    days = _counts(ctx, account.id, from_, to, subaccount_id)
    return [DailyStat.model_validate({**c, "date": d}) for d, c in days.items()]


@router.get("/api/v1/account/subaccount/stat/{subaccount_id}/aggregate")
def account_subaccount_stat_aggregate(
    ctx: ContextDep, account: AccountDep, subaccount_id: IdPath, from_: From, to: To
) -> Stat:
    """One sub-account's counts over the range."""
    _range(from_, to, AGGREGATE_DAYS)
    _sub(ctx, account.id, subaccount_id)
    return _total(_counts(ctx, account.id, from_, to, subaccount_id))


@router.get("/api/v1/account/stat")
def get_all_account_stats(
    ctx: ContextDep, account: AccountDep, from_: From, to: To
) -> list[AccountStats]:
    """The account's counts per day (every sub-account)."""
    _range(from_, to, DAILY_DAYS)
    days = _counts(ctx, account.id, from_, to, None)
    return [AccountStats(date=d, stat=Stat.model_validate(c)) for d, c in days.items()]


@router.get("/api/v1/account/stat/aggregate")
def get_account_aggregate_stats(ctx: ContextDep, account: AccountDep, from_: From, to: To) -> Stat:
    """The account's counts over the range (every sub-account)."""
    _range(from_, to, AGGREGATE_DAYS)
    return _total(_counts(ctx, account.id, from_, to, None))


def _no_groups() -> Unprocessable:
    return Unprocessable(
        "statistics by group need the groups messages are sent with, which are not stored yet",
        errors=[{"field": "query.group", "message": "groups are not stored yet"}],
    )


@router.get(
    "/api/v1/account/subaccount/stat/{subaccount_id}/group", status_code=501, responses=_NO_GROUPS
)
def get_aggregate_stats_by_group(
    account: AccountDep,
    subaccount_id: IdPath,
    group: Annotated[str, Query(max_length=200)],
    from_: From,
    to: To,
) -> Any:
    raise _no_groups()


@router.get("/api/v1/account/stat/group", status_code=422, responses=_NO_GROUPS)
def get_account_stats_by_group(
    account: AccountDep, group: Annotated[str, Query(max_length=200)], from_: From, to: To
) -> Any:
    raise _no_groups()


@router.get("/api/v1/account/stat/aggregate/group", status_code=422, responses=_NO_GROUPS)
def get_account_aggregate_stats_by_group(
    account: AccountDep, group: Annotated[str, Query(max_length=200)], from_: From, to: To
) -> Any:
    raise _no_groups()
