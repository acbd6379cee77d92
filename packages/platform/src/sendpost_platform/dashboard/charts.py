"""Outcome rates and the outcome chart (pure: counts in, numbers and SVG geometry out).

Rates answer "how is my mail doing": out of the messages relayed to a provider (CSSent), how
many were delivered, bounced hard or soft, or dropped, and how many delivered messages drew a
complaint (CSSpamReport). Every rate says what it is a share of.

The chart shows outcomes per interval, stacked (an interval's bar is at most its messages; the
lifecycle stages CSProcessed and CSSent are not stacked on top of their own outcomes), with a y
axis of round numbers, time labels and a legend. It is drawn twice, for wide and for narrow
screens (the page's stylesheet shows one of them): an SVG scales its text with its width, so one
drawing cannot be readable both on a desktop and on a phone.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Mapping, Sequence

from sendpost_wire import EventType

OUTCOMES: tuple[EventType, ...] = (
    EventType.CSDelivered,
    EventType.CSSoftBounced,
    EventType.CSHardBounced,
    EventType.CSDropped,
    EventType.CSSpamReport,
)
"""What the chart stacks, bottom to top."""

LABELS = {
    EventType.CSDelivered: "Delivered",
    EventType.CSSoftBounced: "Soft bounce",
    EventType.CSHardBounced: "Hard bounce",
    EventType.CSDropped: "Dropped",
    EventType.CSSpamReport: "Complaint",
}


@dataclasses.dataclass(frozen=True, slots=True)
class Rate:
    count: int
    of: int
    """The count it is a share of (0: no rate)."""

    @property
    def text(self) -> str:
        """``97.5%``, ``<0.1%`` for a non-zero share that rounds to nothing, ``—`` with no base."""
        if self.of == 0:
            return "—"
        share = 100 * self.count / self.of
        if 0 < share < 0.1:
            return "<0.1%"
        return f"{share:.1f}%"


@dataclasses.dataclass(frozen=True, slots=True)
class Rates:
    sent: int
    delivered: Rate
    hard: Rate
    soft: Rate
    dropped: Rate
    complaints: Rate
    """Complaints per delivered message."""
    opens: int
    clicks: int


def rates(per_type: Mapping[int, int]) -> Rates:
    """Outcome rates from counts per event type (one provider, one period)."""
    sent = per_type.get(EventType.CSSent, 0)
    delivered = per_type.get(EventType.CSDelivered, 0)
    return Rates(
        sent=sent,
        delivered=Rate(delivered, sent),
        hard=Rate(per_type.get(EventType.CSHardBounced, 0), sent),
        soft=Rate(per_type.get(EventType.CSSoftBounced, 0), sent),
        dropped=Rate(per_type.get(EventType.CSDropped, 0), sent),
        complaints=Rate(per_type.get(EventType.CSSpamReport, 0), delivered),
        opens=per_type.get(EventType.CSOpen, 0),
        clicks=per_type.get(EventType.CSClick, 0),
    )


# --- the chart ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    type_id: int
    title: str


@dataclasses.dataclass(frozen=True, slots=True)
class Tick:
    position: float
    """x for time labels, y for value lines."""
    text: str


@dataclasses.dataclass(frozen=True, slots=True)
class Chart:
    width: int
    height: int
    plot_left: float
    plot_top: float
    plot_right: float
    plot_bottom: float
    bars: list[Bar]
    y_ticks: list[Tick]
    x_ticks: list[Tick]
    font_size: int
    peak: int
    description: str


def nice_ceiling(value: int) -> int:
    """The smallest of 1, 2, 5 × 10ⁿ that is ≥ ``value`` (at least 1): a round axis top."""
    if value <= 1:
        return 1
    magnitude = int(10 ** math.floor(math.log10(value)))
    for step in (1, 2, 5, 10):
        if step * magnitude >= value:
            return step * magnitude
    return 10 * magnitude


def outcome_chart(
    starts: Sequence[dt.datetime],
    step: dt.timedelta,
    counts: Mapping[tuple[int, int], int],
    *,
    width: int,
    label_format: str,
) -> Chart:
    """Stacked outcome bars per interval, ``width`` viewBox units wide (the text is 12 units)."""
    font = 12
    height = max(160, width // 4)
    left, top, right, bottom = font * 4.0, font * 0.8, width - font * 0.5, height - font * 2.2
    slot = (right - left) / max(1, len(starts))
    totals = [sum(counts.get((i, int(t)), 0) for t in OUTCOMES) for i in range(len(starts))]
    peak = max(totals, default=0)
    top_value = nice_ceiling(peak)
    scale = (bottom - top) / top_value
    bars = []
    for i, start in enumerate(starts):
        y = bottom
        for kind in OUTCOMES:
            n = counts.get((i, int(kind)), 0)
            if n == 0:
                continue
            h = n * scale
            y -= h
            title = f"{start:{label_format}} UTC: {n} {LABELS[kind].lower()}"
            gap = min(2.0, slot * 0.15)
            bars.append(Bar(left + i * slot + gap, y, slot - 2 * gap, h, int(kind), title))
    y_ticks = [
        Tick(bottom - value * scale, f"{value:,}")
        for value in sorted({0, top_value // 2 if top_value >= 2 else 0, top_value})
    ]
    label_every = max(1, math.ceil(len(starts) / max(1, int((right - left) // (font * 7)))))
    x_ticks = [
        Tick(left + (i + 0.5) * slot, f"{start:{label_format}}")
        for i, start in enumerate(starts)
        if i % label_every == 0 or i == len(starts) - 1
    ]
    if len(x_ticks) >= 2 and x_ticks[-1].position - x_ticks[-2].position < font * 6:
        del x_ticks[-2]
    per = "hour" if step < dt.timedelta(days=1) else "day"
    description = (
        f"Outcomes per {per}, stacked: delivered, soft and hard bounces, dropped, complaints; "
        f"peak {peak} in one {per}"
    )
    return Chart(
        width=width,
        height=height,
        plot_left=left,
        plot_top=top,
        plot_right=right,
        plot_bottom=bottom,
        bars=bars,
        y_ticks=y_ticks,
        x_ticks=x_ticks,
        font_size=font,
        peak=peak,
        description=description,
    )
