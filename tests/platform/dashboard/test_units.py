"""The dashboard's pure parts: the session cookie, filter parsing, intervals and formatting."""

from __future__ import annotations

import datetime as dt

import httpx
import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st
from sendpost_platform.dashboard import charts, session, views
from sendpost_platform.domain import agent_health
from sendpost_platform.store import Store
from sendpost_platform.store import events as event_store
from sendpost_platform.store.dashboard_queries import Buckets
from sendpost_platform.store.schema import accounts as accounts_table

from tests.platform.conftest import Seed
from tests.platform.dashboard.helpers import T0, sign_in

SECRET = session.session_secret("platform-secret")


def test_cookie_round_trip_and_lifetime() -> None:
    """A cookie reads back as the session it was made from until its 12 hours are over."""
    made = session.Session(7, T0, session.key_fingerprint(SECRET, "ab" * 32))
    cookie = session.make_cookie(SECRET, made)
    assert session.read_cookie(SECRET, cookie, now=T0 + dt.timedelta(hours=11)) == made
    assert session.read_cookie(SECRET, cookie, now=T0 + dt.timedelta(hours=12)) is None
    assert session.read_cookie(SECRET, cookie, now=T0 - dt.timedelta(hours=1)) is None


def test_cookie_refused_with_another_secret_or_edited() -> None:
    """The signature binds the payload to the platform secret: any edit or other secret fails."""
    cookie = session.make_cookie(SECRET, session.Session(7, T0, "fp"))
    other = session.session_secret("another")
    assert session.read_cookie(other, cookie, now=T0) is None
    payload, _, signature = cookie.partition(".")
    assert session.read_cookie(SECRET, payload + "A." + signature, now=T0) is None
    assert session.read_cookie(SECRET, payload, now=T0) is None


def test_fingerprint_follows_the_key() -> None:
    """Another key hash gives another fingerprint (a changed key ends old sessions)."""
    first = session.key_fingerprint(SECRET, "a" * 64)
    assert first == session.key_fingerprint(SECRET, "a" * 64)
    assert first != session.key_fingerprint(SECRET, "b" * 64)


def test_no_secret_no_sessions() -> None:
    """Without a platform secret no session key can be derived."""
    with pytest.raises(ValueError, match="platform secret"):
        session.session_secret("")


@given(st.text(max_size=300))
def test_read_cookie_never_raises(value: str) -> None:
    """Arbitrary cookie text is either a valid session or None, never an exception."""
    assert session.read_cookie(SECRET, value, now=T0) is None


def test_empty_form_fields_mean_no_filter() -> None:
    """A submitted form with every field empty lists everything, 50 per page."""
    query = views.parse_event_filters(
        3,
        {k: "" for k in (*views.FILTER_KEYS, "cursor")},
        [""],
    )
    assert query.errors == []
    assert query.where == event_store.EventFilter(account_id=3, event_types=[])
    assert (query.limit, query.after) == (50, None)


def test_browser_and_rfc3339_times() -> None:
    """``datetime-local`` values are taken as UTC; RFC 3339 offsets are honoured."""
    query = views.parse_event_filters(
        1, {"from": "2026-02-19T10:30", "to": "2026-02-19T12:00:00+01:00"}, []
    )
    assert query.where is not None
    assert (query.where.since, query.where.until) == (
        dt.datetime(2026, 2, 19, 10, 30, tzinfo=dt.UTC),
        dt.datetime(2026, 2, 19, 11, 0, tzinfo=dt.UTC),
    )
    assert views.form_time("2026-02-19T12:00:00+01:00") == "2026-02-19T11:00:00"


def test_link_keeps_filters_and_types() -> None:
    """The "Older" link carries every filter and type, plus the new cursor."""
    query = views.parse_event_filters(
        1, {"recipient": "a@b.example", "limit": "25"}, ["CSSent", "63"]
    )
    assert query.link(cursor="abc") == (
        "?recipient=a%40b.example&limit=25&type=59&type=63&cursor=abc"
    )


@pytest.mark.parametrize(
    ("name", "start", "count"),
    [
        ("24h", dt.datetime(2026, 2, 18, 13, 0, tzinfo=dt.UTC), 24),
        ("7d", dt.datetime(2026, 2, 13, tzinfo=dt.UTC), 7),
        ("30d", dt.datetime(2026, 1, 21, tzinfo=dt.UTC), 30),
    ],
)
def test_ranges_align_to_whole_hours_and_days(name: str, start: dt.datetime, count: int) -> None:
    """Intervals start on whole UTC hours or days; the last one holds now."""
    now = dt.datetime(2026, 2, 19, 12, 34, 56, tzinfo=dt.UTC)
    buckets = views.stats_range(name, now)
    assert (buckets.start, buckets.count) == (start, count)
    assert buckets.end > now >= buckets.end - buckets.step


def test_outcome_bars_stack_outcomes_only_against_a_round_axis() -> None:
    """Bars stack outcomes (delivered, then bounces), never lifecycle stages: 100 processed and
    100 sent in the same hour as 3 delivered and 1 hard bounce make a peak of 4, on an axis up
    to 5 with ticks 0, 2, 5; the tallest bar reaches 4/5 of the plot."""
    buckets = Buckets(T0, dt.timedelta(hours=1), 2)
    counts = {(0, 58): 100, (0, 59): 100, (0, 60): 3, (0, 63): 1, (1, 60): 2}
    view = views.stats_view(buckets, counts)
    chart = view.wide
    assert (chart.peak, view.grand_total) == (4, 206)
    assert ["0", "2", "5"] == [t.text for t in chart.y_ticks]
    first = [b for b in chart.bars if b.x < (chart.plot_left + chart.plot_right) / 2]
    assert [60, 63] == [b.type_id for b in first]
    plot = chart.plot_bottom - chart.plot_top
    assert abs(sum(b.height for b in first) - plot * 4 / 5) < 0.01
    assert abs(first[1].y + first[1].height - first[0].y) < 0.01
    assert chart.x_ticks[0].text == "12:00"


def test_nice_ceiling_and_rates() -> None:
    """Axis tops are 1, 2 or 5 times a power of ten; rates say what they are a share of and
    show "—" without a base."""
    assert [1, 1, 2, 5, 5, 10, 20, 50, 100, 200] == [
        charts.nice_ceiling(v) for v in (0, 1, 2, 3, 5, 6, 11, 21, 99, 101)
    ]
    rates = charts.rates({59: 200, 60: 195, 63: 3, 64: 2, 67: 1})
    assert ("97.5%", "1.5%", "1.0%", "0.5%") == (
        rates.delivered.text,
        rates.hard.text,
        rates.soft.text,
        rates.complaints.text,
    )
    assert "—" == charts.rates({}).delivered.text
    assert "<0.1%" == charts.Rate(1, 5000).text


def test_agent_health_names_what_is_wrong() -> None:
    """✓ only for an agent heard from recently that says it is healthy; otherwise the status
    and a line naming the problem: never seen, silent (5 min with heartbeats, 15 without),
    unhealthy with its reasons, or an old key presented after the last good contact."""
    now = T0
    minutes = dt.timedelta(minutes=1)
    healthy = {"healthy": True, "problems": []}
    sick = {"healthy": False, "problems": ["log unreadable: /var/log/mail.log: Permission denied"]}

    def check(**kw: object) -> tuple[str, str]:
        values: dict[str, object] = {
            "last_seen": None,
            "report": None,
            "report_at": None,
            "key_rejected_at": None,
        }
        values.update(kw)
        found = agent_health.assess(now=now, **values)  # type: ignore[arg-type]
        return found.status, found.summary

    assert ("never", "agent never seen") == check()
    assert ("ok", "agent seen 4 min ago") == check(last_seen=now - 4 * minutes)
    assert ("ok", "agent seen 4 min ago") == check(
        last_seen=now - 4 * minutes, report=healthy, report_at=now - 4 * minutes
    )
    assert ("stale", "agent silent: last seen 6 min ago") == check(
        last_seen=now - 6 * minutes, report=healthy, report_at=now - 6 * minutes
    )
    assert "ok" == check(last_seen=now - 14 * minutes)[0]
    assert ("stale", "agent silent: last seen 3 h ago") == check(last_seen=now - 180 * minutes)
    status, summary = check(last_seen=now - minutes, report=sick, report_at=now - minutes)
    assert ("unhealthy", True) == (status, "Permission denied" in summary)
    status, summary = check(last_seen=now - 10 * minutes, key_rejected_at=now - minutes)
    assert ("key_rejected", True) == (status, "current ingestion key" in summary)
    assert "ok" == check(last_seen=now - minutes, key_rejected_at=now - 2 * minutes)[0]
    badge = views.agent_badge(
        agent_health.assess(
            now=now, last_seen=None, report=None, report_at=None, key_rejected_at=None
        )
    )
    assert ("⚠️", False) == (badge.symbol, badge.ok)


@pytest.fixture
def store(sqlite_store: Store) -> Store:
    return sqlite_store


async def test_changed_account_key_ends_sessions(client: httpx.AsyncClient, seed: Seed) -> None:
    """A session made with the old key stops working when the account's key changes."""
    await sign_in(client, seed.account.account_key)
    assert (await client.get("/dashboard/providers")).status_code == 200
    with seed.store.write() as conn:
        conn.execute(
            sa.update(accounts_table)
            .where(accounts_table.c.id == seed.account.account_id)
            .values(key_hash="0" * 64)
        )
    assert (await client.get("/dashboard/providers")).status_code == 303
