"""Reporting periods resolved from a scheduled time, in the report's timezone."""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from report_platform.reports.definition import (
    CustomRange,
    Period,
    PreviousDay,
    PreviousMonth,
    PreviousWeek,
    RollingWindow,
    Schedule,
)
from report_platform.reports.schedule import (
    local_day_start,
    ticks_between,
    wall_time_to_utc,
    zone,
)

_TINY = timedelta(microseconds=1)


@dataclass(frozen=True)
class ResolvedPeriod:
    """A half-open period [start, end) in UTC and in the report's timezone."""

    start_utc: datetime
    end_utc: datetime
    start_local: datetime
    end_local: datetime
    whole_days: bool
    first_day: date
    last_day: date

    @property
    def timezone(self) -> str:
        return str(self.start_local.tzinfo)

    @property
    def duration(self) -> timedelta:
        return self.end_utc - self.start_utc


def _build(start_utc: datetime, end_utc: datetime, timezone: str) -> ResolvedPeriod:
    tz = zone(timezone)
    start_local = start_utc.astimezone(tz)
    end_local = end_utc.astimezone(tz)
    whole_days = start_utc == local_day_start(start_local.date(), tz) and end_utc == (
        local_day_start(end_local.date(), tz)
    )
    return ResolvedPeriod(
        start_utc=start_utc.astimezone(UTC),
        end_utc=end_utc.astimezone(UTC),
        start_local=start_local,
        end_local=end_local,
        whole_days=whole_days,
        first_day=start_local.date(),
        # Computed from UTC: wall-clock subtraction would land in a gap if a day starts at 01:00.
        last_day=max((end_utc - _TINY).astimezone(tz).date(), start_local.date()),
    )


def period_for_dates(start: date, end: date, timezone: str) -> ResolvedPeriod:
    """Whole local days start..end, inclusive of both, e.g. for re-delivering a past period."""
    if end < start:
        raise ValueError(f"end {end} is before start {start}")
    tz = zone(timezone)
    try:
        next_day = end + timedelta(days=1)
        return _build(local_day_start(start, tz), local_day_start(next_day, tz), timezone)
    except OverflowError:  # within a day of date.min/date.max: no UTC instant to give
        raise ValueError(f"the period {start} to {end} lies outside the dates the calendar can hold") from None


def _months_back(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 - months
    return date(index // 12, index % 12 + 1, 1)


def resolve_period(period: Period, timezone: str, scheduled_at: datetime) -> ResolvedPeriod:
    """The period a run scheduled at `scheduled_at` (aware, any offset) reports on.

    rolling_window: minutes and hours are exact elapsed time; days and weeks are calendar days,
    so `1d` starts at the same local time yesterday even across a DST change.
    """
    if scheduled_at.tzinfo is None or scheduled_at.utcoffset() is None:
        raise ValueError(f"scheduled_at must be timezone-aware, got {scheduled_at.isoformat()}")
    tz = zone(timezone)
    local = scheduled_at.astimezone(tz)
    today = local.date()
    if isinstance(period, PreviousDay):
        return period_for_dates(today - timedelta(days=1), today - timedelta(days=1), timezone)
    if isinstance(period, PreviousWeek):
        monday = today - timedelta(days=today.weekday())
        return period_for_dates(monday - timedelta(days=7), monday - timedelta(days=1), timezone)
    if isinstance(period, PreviousMonth):
        first = _months_back(today, 1)
        last = first.replace(day=calendar.monthrange(first.year, first.month)[1])
        return period_for_dates(first, last, timezone)
    if isinstance(period, CustomRange):
        return period_for_dates(period.start, period.end, timezone)
    if isinstance(period, RollingWindow):
        end_utc = scheduled_at.astimezone(UTC)
        if period.unit in ("m", "h"):
            minutes = period.amount * (60 if period.unit == "h" else 1)
            return _build(end_utc - timedelta(minutes=minutes), end_utc, timezone)
        days = period.amount * (7 if period.unit == "w" else 1)
        # Same wall time `days` earlier, resolved like a schedule tick so that consecutive
        # daily runs with a 1d window neither overlap nor leave a gap.
        start_utc = wall_time_to_utc(local.replace(tzinfo=None) - timedelta(days=days), tz)
        return _build(min(start_utc, end_utc), end_utc, timezone)
    raise TypeError(f"unsupported period {period!r}")


def periods_in_range(
    period: Period, schedule: Schedule, timezone: str, start: date, end: date
) -> list[tuple[datetime, ResolvedPeriod]]:
    """(scheduled_at, period) for every tick on local dates start..end inclusive, for backfills."""
    if end < start:
        raise ValueError(f"end {end} is before start {start}")
    tz = zone(timezone)
    range_start = local_day_start(start, tz)
    range_end = local_day_start(end + timedelta(days=1), tz)
    return [(tick, resolve_period(period, timezone, tick)) for tick in ticks_between(schedule, range_start, range_end)]
