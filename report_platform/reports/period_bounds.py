"""Bounds on the periods a person chooses (custom ranges, "run now" for a past period).

Plain dates and one setting: both the definition model (which checks custom ranges) and period
resolution use it, without depending on each other.
"""

from __future__ import annotations

from datetime import date

from report_platform.settings import current_settings

# Bounds on periods a person chooses (custom_range, run now for a past period). Dates far outside
# the usage data are typos, and the calendar's ends cannot even be converted to UTC; a year is
# what a report reasonably re-delivers at once (a data engineer backfills longer ranges).
EARLIEST_DATE = date(1970, 1, 1)
LATEST_DATE = date(2999, 12, 31)
MAX_PERIOD_DAYS_ENV = "REPORT_PLATFORM_MAX_PERIOD_DAYS"


def max_period_days() -> int:
    """The longest period in days a person may choose: $REPORT_PLATFORM_MAX_PERIOD_DAYS, default 366."""
    return current_settings().max_period_days


def period_dates_problem(start: date, end: date) -> tuple[str, str] | None:
    """("start" or "end", what is wrong) if local days start..end (inclusive) may not be a period, else None."""
    for which, day in (("start", start), ("end", end)):
        if not EARLIEST_DATE <= day <= LATEST_DATE:
            return which, f"must be between {EARLIEST_DATE} and {LATEST_DATE}, got {day}"
    if end < start:
        return "end", f"must be on or after start ({start}), got {end}"
    limit = max_period_days()
    days = (end - start).days + 1
    if days > limit:
        return "end", (
            f"a period may be at most {limit} days long ({MAX_PERIOD_DAYS_ENV}), got {days} days from {start} to {end}"
        )
    return None
