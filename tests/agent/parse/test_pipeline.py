"""Pipeline counters, damaged input and timestamps."""

from __future__ import annotations

import datetime as dt

import pytest
from sendpost_agent.parse.postfix import Pipeline
from sendpost_agent.parse.timestamps import YearGuess, to_micros

UUID = "1b6a63aa-922c-4d68-8f3e-4b8d0c6f7a01"
HEADER = (
    b"Feb 19 12:00:00 mx postfix/cleanup[1]: A1B2C3D4E5: info: header X-Sendpost-Message-UUID: "
    + UUID.encode()
    + b" from p[192.0.2.1]; from=<s@x.org> to=<r@x.org> proto=ESMTP helo=<p>\n"
)
SENT = (
    b"Feb 19 12:00:01 mx postfix/smtp[2]: A1B2C3D4E5: to=<r@x.org>, relay=m[192.0.2.9]:25,"
    b" delay=1, delays=0/0/0/1, dsn=2.0.0, status=sent (250 2.0.0 Ok \xff\xfe queued)\n"
)
UTC = dt.UTC


def test_counters_for_damaged_input() -> None:
    """Invalid UTF-8 is decoded with U+FFFD and still used (counted); a line over 64 KiB and a
    truncated delivery line are counted as unparsed; other lines are ignored; nothing raises."""
    long_line = b"Feb 19 12:00:02 mx postfix/smtp[2]: A1B2C3D4E5: to=<" + b"x" * 70_000 + b">\n"
    cut = b"Feb 19 12:00:03 mx postfix/smtp[2]: A1B2C3D4E5: to=<r@x.org>, relay=m[192.0.2.9]:25\n"
    noise = b"Feb 19 12:00:04 mx postfix/smtpd[3]: connect from p[192.0.2.1]\n\xc3\x28 junk\n"
    pipeline = Pipeline(reference_time=dt.datetime(2024, 3, 1, tzinfo=UTC), tz=UTC)
    events = pipeline.feed(HEADER + SENT + long_line + cut + noise)
    assert [(e.event_type, e.smtp_description) for e in events] == [
        ("delivered", "2.0.0 Ok \ufffd\ufffd queued")
    ]
    assert pipeline.stats.to_json() == {
        "lines": 6,
        "parsed": 2,
        "ignored": 2,
        "unparsed": {"too_long": 1, "truncated": 1},
        "invalid_utf8": 1,
        "uncorrelated": 0,
        "hops_resolved": 0,
        "hops_unresolved": 0,
        "recipients_from_orig_to": 0,
        "events": {"delivered": 1},
    }


def test_last_line_without_newline_is_a_line() -> None:
    """A buffer whose last line lacks its newline still counts and parses that line."""
    pipeline = Pipeline(reference_time=dt.datetime(2024, 3, 1, tzinfo=UTC), tz=UTC)
    events = pipeline.feed(HEADER + SENT.rstrip(b"\n"))
    assert ([e.event_type for e in events], pipeline.stats.lines) == (["delivered"], 2)


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [
        ("2023-03-14T00:31:12.224301+01:00", dt.datetime(2023, 3, 13, 23, 31, 12, 224301, UTC)),
        ("2020-01-30T06:26:07.404714+09:00", dt.datetime(2020, 1, 29, 21, 26, 7, 404714, UTC)),
        ("2024-05-01T10:00:00Z", dt.datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC)),
        ("2013 Jun 16 16:05:07.123", dt.datetime(2013, 6, 16, 16, 5, 7, 123000, UTC)),
        ("Feb  4 16:18:40", dt.datetime(2024, 2, 4, 16, 18, 40, tzinfo=UTC)),
        ("May 01 17:55:38", dt.datetime(2023, 5, 1, 17, 55, 38, tzinfo=UTC)),
        ("Mar 7 02:09:33", dt.datetime(2024, 3, 7, 2, 9, 33, tzinfo=UTC)),
        ("%(day)s 11:00:20", None),
        ("Feb 30 10:00:00", None),
    ],
)
def test_timestamp_forms(stamp: str, expected: dt.datetime | None) -> None:
    """RFC 3339 with fractions and offsets, year-first templates, classic stamps with space-,
    zero- or un-padded days (year from the reference: not more than a day ahead of it)."""
    guess = YearGuess(dt.datetime(2024, 3, 10, tzinfo=UTC), UTC)
    assert guess.resolve(stamp) == (to_micros(expected) if expected else None)


def test_year_rolls_over_at_new_year() -> None:
    """Dec → Jan moves to the next year; a late December line after that stays in the old year."""
    guess = YearGuess(dt.datetime(2024, 1, 2, tzinfo=UTC), UTC)
    stamps = ["Dec 31 23:59:59", "Jan  1 00:00:01", "Dec 31 23:59:58", "Jan  1 00:00:02"]
    assert [guess.resolve(s) for s in stamps] == [
        to_micros(dt.datetime(2023, 12, 31, 23, 59, 59, tzinfo=UTC)),
        to_micros(dt.datetime(2024, 1, 1, 0, 0, 1, tzinfo=UTC)),
        to_micros(dt.datetime(2023, 12, 31, 23, 59, 58, tzinfo=UTC)),
        to_micros(dt.datetime(2024, 1, 1, 0, 0, 2, tzinfo=UTC)),
    ]


def test_classic_stamps_use_the_given_time_zone() -> None:
    """Classic stamps are local time: with tz=UTC+2, 12:00 is 10:00 UTC."""
    tz = dt.timezone(dt.timedelta(hours=2))
    guess = YearGuess(dt.datetime(2024, 3, 10, tzinfo=UTC), tz)
    assert guess.resolve("Feb 19 12:00:00") == to_micros(
        dt.datetime(2024, 2, 19, 10, 0, 0, tzinfo=UTC)
    )
