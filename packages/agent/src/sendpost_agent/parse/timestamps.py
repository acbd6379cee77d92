"""Log timestamps → UTC microseconds since the epoch.

Forms understood (the text before the host name on a syslog line):

* RFC 3339 / ISO 8601 with fraction and offset: ``2023-03-14T00:31:12.224301+01:00``, ``...Z``;
* classic syslog without a year: ``Feb  4 16:18:40``, ``May 01 17:55:38`` (``maillog_file``),
  ``Mar 7 02:09:33``, optionally with a fraction;
* year-first rsyslog templates: ``2013 Jun 16 16:05:07.123``.

Anything else (``%(day)s 11:00:20``) gives no timestamp; the event is then sent without one.

Classic timestamps need a year. :class:`YearGuess` keeps the only state that needs: the year and
month of the last classic line. The first classic line takes the year of the reference time (or
the one before, when that would put the line more than a day in the future); after that a month
more than six months *before* the last one means the log crossed New Year, and a month more than
six months *after* it is a late line from the previous year (logged out of order), which does not
move the state. Classic timestamps are local time of the host that wrote them.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

_MONTHS = {
    name: i + 1
    for i, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
    )
}
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_CLASSIC = re.compile(
    r"(?:(?P<year>\d{4}) )?(?P<mon>[A-Za-z]{3}) +(?P<day>\d{1,2}) "
    r"(?P<h>\d{2}):(?P<m>\d{2}):(?P<s>\d{2})(?:\.(?P<frac>\d{1,9}))?"
)
_ISO = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:?\d{2})?")


def to_micros(value: dt.datetime) -> int:
    """An aware datetime as integer microseconds since the epoch (exact, unlike floats)."""
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(micros: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(microseconds=micros)


class YearGuess:
    """Infers the year of classic timestamps; its state is two integers (see module docstring)."""

    def __init__(
        self,
        reference: dt.datetime | None,
        tz: dt.tzinfo | None,
        state: dict[str, Any] | None = None,
    ) -> None:
        self._reference = reference
        self._tz = tz
        self._hours: dict[str, int] = {}
        self.year: int | None = None
        self.month: int | None = None
        if state:
            self.year = int(state["year"]) if state.get("year") is not None else None
            self.month = int(state["month"]) if state.get("month") is not None else None

    def state(self) -> dict[str, Any]:
        return {"year": self.year, "month": self.month}

    def resolve(self, stamp: str) -> int | None:
        """Microseconds since the epoch for a timestamp text, or None if not understood.

        Classic stamps ``... HH:MM:SS`` are resolved once per hour of the log (cached: the
        hour's start, then plus minutes and seconds); a DST change falls on an hour boundary.
        """
        if len(stamp) >= 14 and stamp[-3] == ":" and stamp[-6] == ":" and stamp[-9] == " ":
            key = stamp[:-6]
            base = self._hours.get(key)
            if base is None:
                base = self._resolve(key + ":00:00")
                if base is None:
                    return None
                if len(self._hours) >= 1000:
                    self._hours.clear()
                self._hours[key] = base
            try:
                return base + (int(stamp[-5:-3]) * 60 + int(stamp[-2:])) * 1_000_000
            except ValueError:
                return None
        return self._resolve(stamp)

    def _resolve(self, stamp: str) -> int | None:
        if stamp[:1].isdigit() and len(stamp) >= 19 and stamp[4] == "-":
            return _iso(stamp)
        m = _CLASSIC.fullmatch(stamp)
        if m is None:
            return None
        month = _MONTHS.get(m.group("mon").lower())
        if month is None:
            return None
        day = int(m.group("day"))
        year_text = m.group("year")
        year = int(year_text) if year_text else self._year_for(month, day)
        frac = m.group("frac") or ""
        micro = int((frac + "000000")[:6]) if frac else 0
        try:
            naive = dt.datetime(
                year, month, day, int(m.group("h")), int(m.group("m")), int(m.group("s")), micro
            )
        except ValueError:
            return None
        aware = naive.replace(tzinfo=self._tz) if self._tz is not None else naive.astimezone()
        return to_micros(aware)

    def _year_for(self, month: int, day: int) -> int:
        if self.year is None or self.month is None:
            ref = self._reference or dt.datetime.now(dt.UTC)  # only when no reference was given
            year = ref.year
            if (month, day) > (ref.month, ref.day + 1):
                year -= 1
            self.year, self.month = year, month
            return year
        if month < self.month - 6:
            self.year += 1
            self.month = month
        elif month > self.month + 6:
            return self.year - 1
        elif month > self.month:
            self.month = month
        return self.year


def _iso(stamp: str) -> int | None:
    if _ISO.fullmatch(stamp) is None:
        return None
    try:
        value = dt.datetime.fromisoformat(stamp)
    except ValueError:
        return None
    if value.tzinfo is None:
        value = value.astimezone()
    return to_micros(value)
